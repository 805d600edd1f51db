"""The conversation as the agent sends it: the run's state (its history and counters), and
the request built from the history, the system prompt and the tools. What a request adds to
the history is the request's (agent/loop.py, Request); clearing and compaction are
agent/context.py's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tuiagent.agent.tools import Toolbox
from tuiagent.config import Settings
from tuiagent.llm.caching import CacheTracker, plan_breakpoints
from tuiagent.runs.records import HaltReason


@dataclass
class RunState:
    """One agent's run so far: its calls, how it ended, its conversation's messages."""

    run_id: str
    turns: int = 0
    subagent_turns: int = 0  # the turns of its sub-agents (agent/delegate.py), all told
    status: str | None = None
    halt_reason: HaltReason | None = None
    # Halted at the cap: the most the next call may cost (what raising the cap must leave).
    needed_usd: Decimal | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SettledEnd:
    """The end of the history's settled part: the last message a clearing edited
    (agent/context.py). Calls hold a cache breakpoint there, so the next clearing (which
    edits only what follows) rewrites the cache from there on, not from the start.
    `cached_at`: when a call first wrote that prefix to the cache (None: not yet), and on
    which model."""

    message: int
    after_turn: int  # the calls after this turn place the breakpoint
    cached_at: float | None = None
    model: str | None = None


def asks_diagnostics(simulated: bool) -> bool:
    """Diagnostics are asked of Anthropic's API and of the offline model; a gateway or other
    compatible endpoint may reject the field, so it is not sent there."""
    return simulated or not os.environ.get("ANTHROPIC_BASE_URL")


# The tools and messages as sent, from the toolbox's definitions and the history.
Offer = Callable[
    [list[dict[str, Any]], list[dict[str, Any]]],
    tuple[list[dict[str, Any]], list[dict[str, Any]]],
]


class Conversation:
    """The requests an agent's conversation makes: the history (`state.history`, replaced
    whole by a compaction or /clear), the system prompt and the tools' definitions."""

    def __init__(
        self,
        state: RunState,
        settings: Settings,
        system_prompt: str,
        toolbox: Toolbox,
        cache: CacheTracker,
        *,
        simulated: bool,
    ) -> None:
        self.state = state
        self.settings = settings
        self.system_prompt = system_prompt
        self.toolbox = toolbox
        self.cache = cache  # the calls' prompt cache: its last message id
        self.ask_diagnostics = asks_diagnostics(simulated)
        # The settled ends whose breakpoints the next call holds: the one cached, and a new
        # one after a clearing until a call has cached it too (context.py keeps them).
        self.settled: list[SettledEnd] = []
        # What the MCP servers make of the tools and messages sent (agent/mcp.py `offered`:
        # their definitions deferred to tool search, when they are), if there are any.
        self.offer: Offer | None = None

    def held(self) -> list[int]:
        """The message indices whose last blocks hold a cache breakpoint."""
        return [s.message for s in self.settled]

    def body(self) -> dict[str, Any]:
        """What every request of the conversation sends: system, tools, messages."""
        tools, messages = self.toolbox.definitions(), self.state.history
        if self.offer is not None:
            tools, messages = self.offer(tools, messages)
        return {"system": self.system_prompt, "tools": tools, "messages": messages}

    def request(self, model: str) -> dict[str, Any]:
        """The next agent call's request to `model`, with its cache breakpoints."""
        settings = self.settings
        request: dict[str, Any] = {
            "model": model,
            "max_tokens": settings.run.max_tokens,
            **self.body(),
        }
        if not settings.cache.enabled:
            return request
        if self.ask_diagnostics:
            # Ask the API why a call missed the cache: it compares with this previous call.
            request["diagnostics"] = {"previous_message_id": self.cache.last_message_id}
        return plan_breakpoints(request, model, settings.cache.ttl, self.held())


def replayable(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Assistant content as it can be sent back: the API's own block fields only."""
    out = []
    for block in content:
        kind = block.get("type")
        if kind == "text":
            out.append({"type": "text", "text": block.get("text", "")})
        elif kind == "tool_use":
            out.append(
                {
                    "type": "tool_use",
                    "id": block["id"],
                    "name": block["name"],
                    "input": block.get("input") or {},
                }
            )
        else:
            out.append({k: v for k, v in block.items() if k not in ("citations",)})
    return [b for b in out if not (b.get("type") == "text" and not b.get("text"))] or [
        {"type": "text", "text": "(no answer)"}
    ]
