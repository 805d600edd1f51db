"""The agent loop: call the model, stream, run tools, send results, until the answer or a limit.

It yields typed events (agent/events.py) and writes the run log itself, so the headless
runner and the UI consume the same stream and neither holds agent logic.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic

from tuiagent.agent.compress import EXPAND_TOOL, Compressed, Compressor, summary_request
from tuiagent.agent.events import (
    AnswerDelta,
    AttemptFailed,
    Event,
    Halted,
    Notice,
    RunEnded,
    RunStarted,
    ToolCallStarted,
    ToolFinished,
    TurnFinished,
    TurnStarted,
    UserMessage,
)
from tuiagent.agent.tools import Toolbox, ToolOutput
from tuiagent.agent.transcript import Transcript, transcript_path
from tuiagent.config import TIERS, Settings
from tuiagent.cost.ledger import Ledger
from tuiagent.cost.pricing import Pricer, usd
from tuiagent.cost.runlog import RunLog, new_run_id, utc_now_iso
from tuiagent.llm.caching import plan_breakpoints
from tuiagent.llm.client import (
    CallFailed,
    CallResult,
    TextDelta,
    ToolUseStarted,
    UsageUpdate,
    stream_message,
)
from tuiagent.llm.tokens import estimate_tokens
from tuiagent.llm.usage import TokenUsage


@dataclass
class Limits:
    max_cost_usd: Decimal
    max_turns: int


@dataclass
class RunState:
    run_id: str
    turns: int = 0
    status: str | None = None
    halt_reason: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class Agent:
    """One run: a conversation with the model, its spend and its log."""

    def __init__(
        self,
        settings: Settings,
        *,
        client: anthropic.AsyncAnthropic,
        provider: str,
        toolbox: Toolbox,
        log_dir: Path,
        run_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.client = client
        self.provider = provider
        self.simulated = provider == "offline"
        self.toolbox = toolbox
        self.clock = clock
        self.pricer = Pricer(settings.prices)
        self.ledger = Ledger()
        self.limits = Limits(settings.max_cost_usd, settings.max_turns)
        self.tier = settings.tier
        self.system_prompt = settings.resolved_system_prompt()
        self.state = RunState(run_id or new_run_id())
        self.log = RunLog(log_dir, self.state.run_id)
        self.transcript = Transcript(transcript_path(self.log.path))
        # Asked before a tool that acts on the world runs (the UI shows a dialog); None: allow.
        self.approve: Callable[[str, dict[str, Any]], Awaitable[bool]] | None = None
        # Large tool results are compressed; the originals stay here for expand_result.
        self.compressor: Compressor | None = None
        if settings.compress:
            self.compressor = Compressor(settings.compress_over_tokens)
            toolbox.add(self.compressor.expand_tool())
        # Events of helper calls made inside a step (a summary's turn), yielded by send().
        self._pending: list[Event] = []
        for tier in TIERS:
            self.pricer.ensure_priced(settings.model_for(tier))

    # --- records -----------------------------------------------------------

    def _write(self, record: dict[str, Any]) -> dict[str, Any]:
        record = {"type": record.pop("type"), "run_id": self.state.run_id, **record}
        self.log.append(record)
        return record

    def start(self) -> RunStarted:
        return RunStarted(
            self._write(
                {
                    "type": "run_start",
                    "started_at": utc_now_iso(),
                    "provider": self.provider,
                    "simulated": self.simulated,
                    "models": {t: self.settings.model_for(t) for t in TIERS},
                    "tier": self.tier,
                    "limits": {
                        "max_cost_usd": usd(self.limits.max_cost_usd),
                        "max_turns": self.limits.max_turns,
                        "max_tokens": self.settings.max_tokens,
                    },
                }
            )
        )

    def finish(self, status: str, halt_reason: str | None = None) -> RunEnded:
        self.state.status, self.state.halt_reason = status, halt_reason
        record = self._write(
            {
                "type": "run_end",
                "ended_at": utc_now_iso(),
                "status": status,
                "halt_reason": halt_reason,
                "turns": self.state.turns,
                "total_cost_usd": usd(self.ledger.spent),
                **self.ledger.totals_record(),
            }
        )
        self.log.close()
        self.transcript.close()
        return RunEnded(record)

    # --- steering (the UI's keys and slash commands) -------------------------

    def set_cap(self, cap: Decimal) -> Decimal:
        """Set the spending cap; never below what is already spent. Returns the cap in force."""
        self.limits.max_cost_usd = max(cap, self.ledger.spent)
        if self.state.halt_reason == "max_cost" and self.ledger.spent < self.limits.max_cost_usd:
            self.state.halt_reason = None
        return self.limits.max_cost_usd

    def set_tier(self, tier: str) -> None:
        if tier not in ("auto", *TIERS):
            raise ValueError(f"unknown tier {tier!r}")
        self.tier = tier

    # --- routing -----------------------------------------------------------

    def route(self) -> tuple[str, str]:
        """The tier for the next call and why."""
        if self.tier != "auto":
            return self.tier, f"pinned to {self.tier}"
        return "balanced", "auto: balanced by default"

    # --- the loop ----------------------------------------------------------

    def _request(self, model: str, max_tokens: int) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": model,
            "max_tokens": max_tokens,
            "system": self.system_prompt,
            "tools": self.toolbox.definitions(),
            "messages": self.state.history,
        }
        return plan_breakpoints(request, model)

    async def send(self, prompt: str) -> AsyncIterator[Event]:
        """Work on one user message until the answer or a limit."""
        if self.state.halt_reason in ("max_cost", "max_turns", "interrupted"):
            self.state.halt_reason = None  # a new message is a new attempt within the limits
        self.state.history.append({"role": "user", "content": [{"type": "text", "text": prompt}]})
        yield UserMessage(
            self._write({"type": "user", "text": prompt, "tokens": estimate_tokens(prompt)})
        )
        while True:
            if self.state.turns >= self.limits.max_turns:
                yield self._halt("max_turns", f"reached --max-turns {self.limits.max_turns}")
                return
            if self.ledger.spent >= self.limits.max_cost_usd:
                yield self._halt(
                    "max_cost",
                    f"spent ${self.ledger.spent:.4f} of the ${self.limits.max_cost_usd} cap",
                )
                return
            tier, reason = self.route()
            model = self.settings.model_for(tier)
            max_tokens = self.settings.max_tokens
            request = self._request(model, max_tokens)
            turn = self.state.turns + 1
            yield TurnStarted(turn, tier, model, max_tokens, reason)
            self.transcript.request(turn, "agent", request)
            result: CallResult | None = None
            partial, streamed = TokenUsage(), []
            try:
                async for item in stream_message(self.client, request, clock=self.clock):
                    if isinstance(item, TextDelta):
                        streamed.append(item.text)
                        yield AnswerDelta(turn, item.text)
                    elif isinstance(item, UsageUpdate):
                        partial = item.usage
                    elif isinstance(item, ToolUseStarted):
                        yield ToolCallStarted(turn, item.tool_use_id, item.name, {})
                    else:
                        result = item
            except CallFailed as failure:
                yield self._attempt(turn, tier, model, failure)
                self.state.status, self.state.halt_reason = "error", "error"
                yield Notice(str(failure), "error")
                return
            except asyncio.CancelledError:
                # Interrupted (Escape, Ctrl-C): what streamed stays, and its cost counts.
                self._settle_interrupted(turn, tier, model, reason, max_tokens, partial, streamed)
                raise
            assert result is not None
            self.state.turns = turn
            yield self._turn_record(turn, tier, model, reason, max_tokens, result)
            self.state.history.append({"role": "assistant", "content": _replayable(result.content)})
            if result.stop_reason != "tool_use" or not result.tool_uses:
                return
            results: list[dict[str, Any]] = []
            for use in result.tool_uses:
                yield ToolCallStarted(turn, use["id"], use["name"], use.get("input") or {})
                output = await self._run_tool(use["name"], use.get("input") or {})
                shown = await self._shrink(use["name"], output.text)
                while self._pending:
                    yield self._pending.pop(0)
                block: dict[str, Any] = {
                    "type": "tool_result",
                    "tool_use_id": use["id"],
                    "content": shown.text,
                }
                if output.is_error:
                    block["is_error"] = True
                results.append(block)
                yield ToolFinished(
                    self._write(
                        {
                            "type": "tool",
                            "turn": turn,
                            "tool_use_id": use["id"],
                            "name": use["name"],
                            "input": use.get("input") or {},
                            "ok": not output.is_error,
                            "result_tokens": shown.compressed_tokens,
                            "original_tokens": shown.original_tokens,
                            "compressed_tokens": shown.compressed_tokens,
                            "method": shown.method,
                            "result_id": shown.result_id,
                        }
                    ),
                    output=shown.text,
                    original=output.text,
                )
            self.state.history.append({"role": "user", "content": results})

    async def _run_tool(self, name: str, args: dict[str, Any]) -> ToolOutput:
        tool = self.toolbox.tools.get(name)
        asks = tool is not None and tool.needs_approval and self.approve is not None
        if asks and self.approve is not None and not await self.approve(name, args):
            return ToolOutput(f"error: the user declined to run {name}", is_error=True)
        return await self.toolbox.call(name, args)

    # --- tool results: compression and summaries ----------------------------

    async def _shrink(self, tool: str, text: str) -> Compressed:
        """What the model sees of a tool result; a compressed one's original is kept."""
        if self.compressor is None:
            tokens = estimate_tokens(text)
            return Compressed(text, "none", tokens, tokens)
        bound = self.compressor.over_tokens
        if self.settings.summarize_results and tool != EXPAND_TOOL:
            tokens = estimate_tokens(text)
            if tokens > bound:
                source = text
                if tokens > 20 * bound:  # the summariser reads a compressed form, not all of it
                    compressed = Compressor(20 * bound).compress(tool, text).text
                    source = (
                        f"[compressed form of a {tokens:,}-token result]\n"
                        + (compressed.split("\n", 1)[-1])
                    )
                model = self.settings.model_for("fast")
                try:
                    reply = await self.helper_call(
                        "summarize", summary_request(model, tool, source, bound - 150)
                    )
                except CallFailed as failure:
                    self._pending.append(
                        Notice(f"could not summarise the {tool} result ({failure})", "warning")
                    )
                else:
                    if reply.text.strip():
                        return self.compressor.summarized(tool, text, reply.text, model)
        return self.compressor.compress(tool, text)

    async def helper_call(self, purpose: str, request: dict[str, Any]) -> CallResult:
        """A call the agent makes for itself, not for the conversation (a summary).

        Every such call goes through here: logged as its own `turn` record with its
        `purpose`, priced and added to the ledger like any call. Its events wait in
        `_pending` for send() to yield. Raises CallFailed (already logged as an attempt).
        """
        turn = self.state.turns
        model = request["model"]
        tier = next((t for t in TIERS if self.settings.model_for(t) == model), "fast")
        reason = f"{purpose}: helper call on the {tier} tier"
        self._pending.append(TurnStarted(turn, tier, model, request["max_tokens"], reason))
        self.transcript.request(turn, purpose, request)
        result: CallResult | None = None
        try:
            async for item in stream_message(self.client, request, clock=self.clock):
                if isinstance(item, CallResult):
                    result = item
        except CallFailed as failure:
            self._pending.append(self._attempt(turn, tier, model, failure))
            raise
        assert result is not None
        self._pending.append(
            self._turn_record(
                turn, tier, model, reason, request["max_tokens"], result, purpose=purpose
            )
        )
        return result

    def _settle_interrupted(
        self,
        turn: int,
        tier: str,
        model: str,
        reason: str,
        max_tokens: int,
        partial: TokenUsage,
        streamed: list[str],
    ) -> None:
        text = "".join(streamed)
        output = max(partial.output_tokens, estimate_tokens(text))
        usage = TokenUsage(**{**partial.as_record(), "output_tokens": output})
        content = [{"type": "text", "text": text}] if text else []
        result = CallResult("", model, content, "interrupted", usage, None, None, 0.0)
        self.state.turns = turn
        self._turn_record(turn, tier, model, reason, max_tokens, result)
        if text:
            self.state.history.append(
                {"role": "assistant", "content": [{"type": "text", "text": text}]}
            )
        self.state.halt_reason = "interrupted"

    def _halt(self, reason: str, detail: str) -> Halted:
        self.state.halt_reason = reason
        return Halted(reason, detail)

    def _turn_record(
        self,
        turn: int,
        tier: str,
        model: str,
        reason: str,
        max_tokens: int,
        result: CallResult,
        purpose: str = "agent",
    ) -> TurnFinished:
        cost = self.pricer.price(model, result.usage)
        self.ledger.add(result.usage, cost)
        return TurnFinished(
            self._write(
                {
                    "type": "turn",
                    "turn": turn,
                    "purpose": purpose,
                    "model": model,
                    "tier": tier,
                    "simulated": self.simulated,
                    **result.usage.as_record(),
                    "cost_usd": usd(cost.total),
                    "cost_breakdown_usd": cost.as_record(),
                    "cumulative_cost_usd": usd(self.ledger.spent),
                    "max_tokens": max_tokens,
                    "stop_reason": result.stop_reason,
                    "latency_s": round(result.latency_s, 4),
                    "ttft_s": None if result.ttft_s is None else round(result.ttft_s, 4),
                    "request_id": result.request_id,
                    "message_id": result.message_id,
                    "route_reason": reason,
                    "tool_calls": [u["name"] for u in result.tool_uses],
                }
            )
        )

    def _attempt(self, turn: int, tier: str, model: str, failure: CallFailed) -> AttemptFailed:
        cost = self.pricer.price(model, failure.partial_usage)
        self.ledger.add(failure.partial_usage, cost, counts_as_turn=False)
        return AttemptFailed(
            self._write(
                {
                    "type": "attempt",
                    "turn": turn,
                    "model": model,
                    "tier": tier,
                    "status": failure.status,
                    "error_type": failure.error_type,
                    "error": str(failure),
                    "request_id": failure.request_id,
                    "retry_in_s": None,
                    **failure.partial_usage.as_record(),
                    "cost_usd": usd(cost.total),
                    "cumulative_cost_usd": usd(self.ledger.spent),
                }
            )
        )


def _replayable(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


def tool_input_preview(arguments: dict[str, Any], limit: int = 60) -> str:
    text = json.dumps(arguments, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"
