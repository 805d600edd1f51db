"""A tool: a name, a JSON schema for the model, and a function that returns text."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


class ToolError(Exception):
    """A tool could not do what was asked. The message goes back to the model as is_error."""


@dataclass(frozen=True)
class ToolOutput:
    text: str
    is_error: bool = False


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_schema: dict[str, Any]
    run: Callable[[dict[str, Any]], Awaitable[str]]
    # Acts on the world (runs a command): the agent asks its `approve` hook first.
    needs_approval: bool = False
    # A tool that reports as it works (delegate): yields the agent's events, then its
    # ToolOutput. The loop uses it where it is set; `run` is the same without the events.
    stream: Callable[[dict[str, Any]], AsyncIterator[Any]] | None = None

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
        }


@dataclass
class Toolbox:
    tools: dict[str, Tool] = field(default_factory=dict)

    def add(self, tool: Tool) -> None:
        self.tools[tool.name] = tool

    def definitions(self) -> list[dict[str, Any]]:
        return [t.definition() for t in self.tools.values()]

    async def call(self, name: str, args: dict[str, Any]) -> ToolOutput:
        tool = self.tools.get(name)
        if tool is None:
            return ToolOutput(f"error: unknown tool {name!r}", is_error=True)
        try:
            return ToolOutput(await tool.run(args))
        except ToolError as exc:
            return ToolOutput(f"error: {exc}", is_error=True)
        except (KeyError, TypeError, ValueError) as exc:
            return ToolOutput(f"error: bad arguments for {name}: {exc}", is_error=True)
