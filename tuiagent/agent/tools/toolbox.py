"""The toolbox: the tools the agent offers the model, and how a call of one runs: within its
tool's deadline, every failure an error result the model reads (never an exception)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from tuiagent.agent.tools.base import Tool, ToolError, ToolOutput


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
            async with asyncio.timeout(tool.deadline_s):
                return ToolOutput(await tool.run(args))
        except ToolError as exc:
            return ToolOutput(f"error: {exc}", is_error=True)
        except TimeoutError:
            return ToolOutput(
                f"error: {name} did not finish within {tool.deadline_s:g}s and was stopped",
                is_error=True,
            )
        except (KeyError, TypeError, ValueError) as exc:
            return ToolOutput(f"error: bad arguments for {name}: {exc}", is_error=True)
        except OSError as exc:
            return ToolOutput(f"error: {name} failed: {exc.strerror or exc}", is_error=True)
