"""The conversation as the agent sends it: where the request being worked on begins in the
history, the request built from the history, and what an answer, an interruption or a
withdrawn message leaves in it. Clearing and compaction are agent/context.py's.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from tuiagent.llm.caching import plan_breakpoints
from tuiagent.runs.records import HaltReason

if TYPE_CHECKING:
    from tuiagent.agent.loop import Agent


def begin_request(agent: Agent, prompt: str | None = None) -> None:
    """Each request gets its own max_turns and max_retries; the cap is the session's. With a
    `prompt` (send), the user's message joins the history; without (go_on), the request a
    limit halted goes on."""
    state = agent.state
    if state.halt_reason != HaltReason.ERROR:
        state.halt_reason = None  # a new attempt within the limits
    agent.request_start, agent.caller.retries_used, agent.working = state.turns, 0, True
    agent.message_at = None  # where the request's message is in the history
    if prompt is not None:
        agent.message_at = len(state.history)
        state.history.append({"role": "user", "content": [{"type": "text", "text": prompt}]})
        agent.prompt, agent.classified = prompt, None


def withdraw_message(agent: Agent) -> str:
    """Nothing of this request's message reached the model: it leaves the conversation and
    goes back to the user (returned), to send once the cap is raised."""
    assert agent.message_at is not None
    del agent.state.history[agent.message_at :]
    return agent.prompt


def asks_diagnostics(simulated: bool) -> bool:
    """Diagnostics are asked of Anthropic's API and of the offline model; a gateway or other
    compatible endpoint may reject the field, so it is not sent there."""
    return simulated or not os.environ.get("ANTHROPIC_BASE_URL")


def request_body(agent: Agent) -> dict[str, Any]:
    tools, messages = agent.toolbox.definitions(), agent.state.history
    if agent.mcp is not None:  # its definitions deferred to tool search, when they are
        tools, messages = agent.mcp.offered(tools, messages)
    return {"system": agent.system_prompt, "tools": tools, "messages": messages}


def agent_request(agent: Agent, model: str) -> dict[str, Any]:
    """The next agent call's request to `model`, with its cache breakpoints."""
    request: dict[str, Any] = {
        "model": model,
        "max_tokens": agent.settings.run.max_tokens,
        **request_body(agent),
    }
    if not agent.settings.cache.enabled:
        return request
    if agent.ask_diagnostics:
        # Ask the API why a call missed the cache: it compares with this previous call.
        request["diagnostics"] = {"previous_message_id": agent.cache.last_message_id}
    return plan_breakpoints(request, model, agent.settings.cache.ttl, agent.context.held())


def add_answer(agent: Agent, content: list[dict[str, Any]]) -> None:
    """The answer joins the history, and the transcript at once: replay compares with the
    answer as it was, even when a compaction replaces it later."""
    agent.state.history.append({"role": "assistant", "content": replayable(content)})
    agent.transcript.messages(agent.state.history)


def interrupted(agent: Agent, turn: int) -> None:
    """The agent call of `turn` was interrupted (Escape, Ctrl-C, a signal): it counts as a
    turn, and what streamed stays in the conversation."""
    agent.state.turns = turn
    agent.state.halt_reason = HaltReason.INTERRUPTED
    if agent.caller.interrupted_content:
        content = agent.caller.interrupted_content
        agent.state.history.append({"role": "assistant", "content": content})


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
