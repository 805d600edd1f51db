"""The tool calls of a step, each: approve, run, compress (or summarise), log.

`ToolRunner.run` streams the tools' events; its result is the tool_result blocks for the
next request and the errors the tools gave (the request decides what they mean).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuiagent.agent.call import Call, Caller, Retries
from tuiagent.agent.compress import EXPAND_TOOL, Compressed, Compressor, summary_request
from tuiagent.agent.events import Notice, ToolCallStarted, ToolFinished
from tuiagent.agent.protocol import Approver
from tuiagent.agent.run_records import Place
from tuiagent.agent.stream import EventStream, Steps
from tuiagent.agent.tools import Toolbox, ToolOutput
from tuiagent.config import Settings
from tuiagent.llm.tokens import estimate_tokens
from tuiagent.runs.records import ToolCall


@dataclass(frozen=True)
class ToolResults:
    """A step's tool calls, done: what the next request sends back, and each call that gave
    an error (its tool, its input, the error), in order."""

    blocks: list[dict[str, Any]]
    errors: list[tuple[str, dict[str, Any], str]]


class ToolRunner:
    """Runs an agent's tool calls: the toolbox's tools, their results compressed (originals
    kept for expand_result) or summarised by a helper call, each logged."""

    def __init__(
        self,
        settings: Settings,
        toolbox: Toolbox,
        compressor: Compressor,
        caller: Caller,
        place: Place,
    ) -> None:
        self.settings = settings
        self.toolbox = toolbox
        self.compressor = compressor
        self.caller = caller  # for summaries
        self.place = place

    def run(
        self,
        turn: int,
        uses: list[dict[str, Any]],
        approve: Approver | None,
        retries: Retries,
    ) -> EventStream[ToolResults]:
        """Run a step's tool calls in order (`approve` asked before a tool that acts on the
        world): their events, then their ToolResults."""
        return EventStream(lambda out: self._run(out, turn, uses, approve, retries))

    async def _run(
        self,
        out: EventStream[ToolResults],
        turn: int,
        uses: list[dict[str, Any]],
        approve: Approver | None,
        retries: Retries,
    ) -> Steps:
        blocks: list[dict[str, Any]] = []
        errors: list[tuple[str, dict[str, Any], str]] = []
        for use in uses:
            name, args = use["name"], use.get("input") or {}
            yield ToolCallStarted(turn, use["id"], name, args)
            tool = self.toolbox.tools.get(name)
            asks = tool is not None and tool.needs_approval and approve is not None
            answer = await approve(name, args) if asks and approve is not None else True
            if answer is not True:  # False, or the user's reason (the model reads it)
                why = f": {answer}" if isinstance(answer, str) and answer.strip() else ""
                output = ToolOutput(f"error: the user declined to run {name}{why}", is_error=True)
            elif tool is not None and tool.stream is not None:
                run = tool.stream(args)  # a tool that reports as it works (delegate)
                yield run
                output = run.result()
            else:
                output = await self.toolbox.call(name, args)
            summary = self._summary_call(name, output.text, turn, retries)
            summarized = None
            if summary is not None:
                yield summary
                end = summary.result()
                if end.result is None:
                    yield Notice(f"could not summarise the {name} result", "warning")
                elif end.result.text.strip():
                    summarized = end.result.text
            shown = self._shown(name, output.text, summarized)
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": use["id"],
                "content": shown.text,
            }
            if output.is_error:
                block["is_error"] = True
                errors.append((name, args, output.text))
            yield ToolFinished(
                self.place.write(
                    ToolCall(
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
            blocks.append(block)
        out.set_result(ToolResults(blocks, errors))

    def _summary_call(self, tool: str, text: str, turn: int, retries: Retries) -> Call | None:
        """With summarize_results, a large result is summarised by a fast-tier call (None: it
        is not); the summariser reads a compressed form of a very large one."""
        settings, bound = self.settings.tools, self.compressor.over_tokens
        if not (settings.compress and settings.summarize_results) or tool == EXPAND_TOOL:
            return None
        tokens = estimate_tokens(text)
        if tokens <= bound:
            return None
        source = text
        if tokens > 20 * bound:
            compressed = Compressor(20 * bound).compress(tool, text).text
            source = (
                f"[compressed form of a {tokens:,}-token result]\n"
                + (compressed.split("\n", 1)[-1])
            )
        model = self.settings.router.model_for("fast")
        request = summary_request(model, tool, source, bound - 150)
        return self.caller.helper("summarize", request, turn, retries)

    def _shown(self, tool: str, text: str, summary: str | None) -> Compressed:
        """What the model sees of a tool result; a compressed one's original is kept."""
        if not self.settings.tools.compress:
            tokens = estimate_tokens(text)
            return Compressed(text, "none", tokens, tokens)
        if summary is not None:
            model = self.settings.router.model_for("fast")
            return self.compressor.summarized(tool, text, summary, model)
        return self.compressor.compress(tool, text)
