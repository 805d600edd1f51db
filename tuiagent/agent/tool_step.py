"""The tool calls of a step, each: approve, run, compress (or summarise), log.

Each yields the tool's events, then its tool_result block for the next request.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from tuiagent.agent.call import CallEnd
from tuiagent.agent.compress import EXPAND_TOOL, Compressed, Compressor, summary_request
from tuiagent.agent.escalation import Escalation
from tuiagent.agent.events import Event, Notice, ToolCallStarted, ToolFinished
from tuiagent.agent.helpers import helper_call
from tuiagent.agent.tools import ToolOutput
from tuiagent.llm.tokens import estimate_tokens
from tuiagent.runs.records import Tool

if TYPE_CHECKING:
    from tuiagent.agent.loop import Agent


async def run_tool_calls(
    agent: Agent, turn: int, uses: list[dict[str, Any]], escalation: Escalation, tier: str
) -> AsyncGenerator[Event | tuple[list[dict[str, Any]], str | None], None]:
    """Run a step's tool calls in order; yields their events, then (the tool_result blocks,
    the first repeated error that fails the step, or None)."""
    results: list[dict[str, Any]] = []
    failed = None
    for use in uses:
        block: dict[str, Any] | None = None
        async with aclosing(run_tool_call(agent, turn, use, escalation, tier)) as pieces:
            async for piece in pieces:
                if isinstance(piece, tuple):
                    block, repeated = piece
                    failed = failed or repeated
                else:
                    yield piece
        assert block is not None
        results.append(block)
    yield results, failed


async def run_tool_call(
    agent: Agent, turn: int, use: dict[str, Any], escalation: Escalation, tier: str
) -> AsyncGenerator[Event | tuple[dict[str, Any], str | None], None]:
    """Run one tool call; yields its events, then (its tool_result block, a repeated
    error that fails the step or None)."""
    name, args = use["name"], use.get("input") or {}
    yield ToolCallStarted(turn, use["id"], name, args)
    output = ToolOutput("")
    async with aclosing(_run_tool(agent, name, args)) as ran:
        async for done in ran:
            if isinstance(done, ToolOutput):
                output = done
            else:
                yield done
    shown = Compressed(output.text, "none", 0, 0)
    async with aclosing(_shrink(agent, name, output.text)) as items:
        async for item in items:
            if isinstance(item, Compressed):
                shown = item
            else:
                yield item
    block: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": use["id"],
        "content": shown.text,
    }
    repeated = None
    if output.is_error:
        block["is_error"] = True
        repeated = escalation.tool_error(tier, name, args, output.text)
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
                diff_lines=getattr(output, "diff_lines", None),
            )
        ),
        output=shown.text,
        original=output.text,
    )
    yield block, repeated


async def _run_tool(
    agent: Agent, name: str, args: dict[str, Any]
) -> AsyncGenerator[Event | ToolOutput, None]:
    """The tool's events (a tool that reports as it works: delegate), then its output."""
    tool = agent.toolbox.tools.get(name)
    asks = tool is not None and tool.needs_approval and agent.approve is not None
    answer = await agent.approve(name, args) if asks and agent.approve is not None else True
    if answer is not True:  # False, or the user's reason (the model reads it)
        why = f": {answer}" if isinstance(answer, str) and answer.strip() else ""
        yield ToolOutput(f"error: the user declined to run {name}{why}", is_error=True)
    elif tool is not None and tool.stream is not None:
        async with aclosing(tool.stream(args)) as items:  # type: ignore[type-var]
            async for item in items:
                yield item
    else:
        yield await agent.toolbox.call(name, args)


async def _shrink(agent: Agent, tool: str, text: str) -> AsyncGenerator[Event | Compressed, None]:
    """What the model sees of a tool result (last item); a compressed one's original is
    kept. With summarize_results, a large result is summarised by a fast-tier call."""
    if not agent.settings.tools.compress:
        tokens = estimate_tokens(text)
        yield Compressed(text, "none", tokens, tokens)
        return
    bound = agent.compressor.over_tokens
    tokens = estimate_tokens(text)
    if agent.settings.tools.summarize_results and tool != EXPAND_TOOL and tokens > bound:
        source = text
        if tokens > 20 * bound:  # the summariser reads a compressed form, not all of it
            compressed = Compressor(20 * bound).compress(tool, text).text
            source = (
                f"[compressed form of a {tokens:,}-token result]\n"
                + (compressed.split("\n", 1)[-1])
            )
        model = agent.settings.router.model_for("fast")
        request = summary_request(model, tool, source, bound - 150)
        summary = None
        async with aclosing(helper_call(agent, "summarize", request)) as items:
            async for item in items:
                if not isinstance(item, CallEnd):
                    yield item
                elif item.result is None:
                    yield Notice(f"could not summarise the {tool} result", "warning")
                elif item.result.text.strip():
                    summary = item.result.text
        if summary is not None:
            yield agent.compressor.summarized(tool, text, summary, model)
            return
    yield agent.compressor.compress(tool, text)
