"""The tool calls of a step, each: approve, run, compress (or summarise), log.

`run_tool_calls` streams the tools' events; its result is the tool_result blocks for the
next request and whether a repeated error fails the step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuiagent.agent.call import Call
from tuiagent.agent.compress import EXPAND_TOOL, Compressed, Compressor, summary_request
from tuiagent.agent.escalation import Escalation
from tuiagent.agent.events import Notice, ToolCallStarted, ToolFinished
from tuiagent.agent.helpers import helper_call
from tuiagent.agent.stream import EventStream, Steps
from tuiagent.agent.tools import ToolOutput
from tuiagent.llm.tokens import estimate_tokens
from tuiagent.runs.records import Tool

if TYPE_CHECKING:
    from tuiagent.agent.loop import Agent


@dataclass(frozen=True)
class ToolResults:
    """A step's tool calls, done: what the next request sends back, and the first repeated
    error that fails the step (None when it did not fail)."""

    blocks: list[dict[str, Any]]
    failed: str | None


def run_tool_calls(
    agent: Agent, turn: int, uses: list[dict[str, Any]], escalation: Escalation, tier: str
) -> EventStream[ToolResults]:
    """Run a step's tool calls in order: their events, then their ToolResults."""
    return EventStream(lambda out: _run_tool_calls(out, agent, turn, uses, escalation, tier))


async def _run_tool_calls(
    out: EventStream[ToolResults],
    agent: Agent,
    turn: int,
    uses: list[dict[str, Any]],
    escalation: Escalation,
    tier: str,
) -> Steps:
    blocks: list[dict[str, Any]] = []
    failed = None
    for use in uses:
        name, args = use["name"], use.get("input") or {}
        yield ToolCallStarted(turn, use["id"], name, args)
        tool = agent.toolbox.tools.get(name)
        asks = tool is not None and tool.needs_approval and agent.approve is not None
        answer = await agent.approve(name, args) if asks and agent.approve is not None else True
        if answer is not True:  # False, or the user's reason (the model reads it)
            why = f": {answer}" if isinstance(answer, str) and answer.strip() else ""
            output = ToolOutput(f"error: the user declined to run {name}{why}", is_error=True)
        elif tool is not None and tool.stream is not None:
            run = tool.stream(args)  # a tool that reports as it works (delegate)
            yield run
            output = run.result()
        else:
            output = await agent.toolbox.call(name, args)
        summary = _summary_call(agent, name, output.text)
        summarized = None
        if summary is not None:
            yield summary
            end = summary.result()
            if end.result is None:
                yield Notice(f"could not summarise the {name} result", "warning")
            elif end.result.text.strip():
                summarized = end.result.text
        shown = _shown(agent, name, output.text, summarized)
        block: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": use["id"],
            "content": shown.text,
        }
        if output.is_error:
            block["is_error"] = True
            repeated = escalation.tool_error(tier, name, args, output.text)  # noted each time
            failed = failed or repeated
        yield ToolFinished(
            agent.write(
                Tool(
                    turn=turn,
                    tool_use_id=use["id"],
                    name=name,
                    input=args,
                    ok=not output.is_error,
                    result_tokens=shown.compressed_tokens,
                    original_tokens=shown.original_tokens,
                    compressed_tokens=shown.compressed_tokens,
                    method=shown.method,
                    result_id=shown.result_id,
                )
            ),
            output=shown.text,
            original=output.text,
        )
        blocks.append(block)
    out.set_result(ToolResults(blocks, failed))


def _summary_call(agent: Agent, tool: str, text: str) -> Call | None:
    """With summarize_results, a large result is summarised by a fast-tier call (None: it
    is not); the summariser reads a compressed form of a very large one."""
    settings = agent.settings.tools
    bound = agent.compressor.over_tokens
    if not (settings.compress and settings.summarize_results) or tool == EXPAND_TOOL:
        return None
    tokens = estimate_tokens(text)
    if tokens <= bound:
        return None
    source = text
    if tokens > 20 * bound:
        compressed = Compressor(20 * bound).compress(tool, text).text
        source = (
            f"[compressed form of a {tokens:,}-token result]\n" + (compressed.split("\n", 1)[-1])
        )
    model = agent.settings.router.model_for("fast")
    return helper_call(agent, "summarize", summary_request(model, tool, source, bound - 150))


def _shown(agent: Agent, tool: str, text: str, summary: str | None) -> Compressed:
    """What the model sees of a tool result; a compressed one's original is kept."""
    if not agent.settings.tools.compress:
        tokens = estimate_tokens(text)
        return Compressed(text, "none", tokens, tokens)
    if summary is not None:
        return agent.compressor.summarized(
            tool, text, summary, agent.settings.router.model_for("fast")
        )
    return agent.compressor.compress(tool, text)
