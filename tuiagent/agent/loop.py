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
from tuiagent.agent.router import (
    CLASSIFIER_PROMPT,
    DEFAULT_EXPECTED_OUTPUT_TOKENS,
    CacheView,
    LastCallCacheView,
    RouteDecision,
    Router,
    step_failure,
    step_up,
    tier_named,
)
from tuiagent.agent.tools import Toolbox
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
from tuiagent.llm.tokens import estimate_request_tokens, estimate_tokens
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
        for tier in TIERS:
            self.pricer.ensure_priced(settings.model_for(tier))
        self.router = Router(settings.tiers, self.pricer, budget_floor=settings.router_budget_floor)
        # The cache state the router weighs: a minimal view from this run's own calls, noted
        # in _turn_record. The cache tracker replaces both lines.
        self._calls_cache = LastCallCacheView()
        self.cache_view: CacheView = self._calls_cache
        self._prompt = ""  # the user's request being worked on, which the router reads
        self._classified: str | None = None  # the classifier's tier for it ("" for none)

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

    def route(self, floor: tuple[str, str] | None = None) -> RouteDecision:
        """The tier for the next agent call and why (agent/router.py). `floor`: the lowest
        tier allowed, and why (after an escalation)."""
        turns = len(self.ledger.turn_costs)
        expected_output = (
            self.ledger.usage.output_tokens // turns if turns else DEFAULT_EXPECTED_OUTPUT_TOKENS
        )
        return self.router.choose(
            prompt=self._prompt,
            input_tokens=estimate_request_tokens(self._request_body()),
            cache=self.cache_view,
            now=self.clock(),
            pin=self.tier,
            spent=self.ledger.spent,
            cap=self.limits.max_cost_usd,
            floor=floor[0] if floor else None,
            floor_reason=floor[1] if floor else "",
            expected_output_tokens=expected_output,
            classified=self._classified,
        )

    async def _classify_call(self, prompt: str) -> AsyncIterator[Event]:
        """The optional classifier (config router_classifier): one helper call on the fast
        tier naming the tier this request needs, priced and logged like every call. Sets
        self._classified; when the call fails or names no tier, the rules decide."""
        self._classified = ""
        decision = self.router.choose(
            prompt=prompt,
            input_tokens=0,
            cache=self.cache_view,
            now=self.clock(),
            pin=self.tier,
            purpose="classify",
        )
        text = [{"type": "text", "text": prompt}]
        request = {
            "model": decision.model,
            "max_tokens": 5,
            "system": CLASSIFIER_PROMPT,
            "messages": [{"role": "user", "content": text}],
        }
        turn = self.state.turns + 1
        yield TurnStarted(turn, decision.tier, decision.model, 5, decision.reason)
        self.transcript.request(turn, "classify", request)
        try:
            async for item in stream_message(self.client, request, clock=self.clock):
                if isinstance(item, CallResult):
                    self.state.turns = turn
                    yield self._turn_record(turn, decision, 5, item, purpose="classify")
                    self._classified = tier_named(item.text)
        except CallFailed as failure:
            yield self._attempt(turn, decision.tier, decision.model, failure)

    # --- the loop ----------------------------------------------------------

    def _request_body(self) -> dict[str, Any]:
        return {
            "system": self.system_prompt,
            "tools": self.toolbox.definitions(),
            "messages": self.state.history,
        }

    def _request(self, model: str, max_tokens: int) -> dict[str, Any]:
        request: dict[str, Any] = {"model": model, "max_tokens": max_tokens, **self._request_body()}
        return plan_breakpoints(request, model)

    async def send(self, prompt: str) -> AsyncIterator[Event]:
        """Work on one user message until the answer or a limit."""
        if self.state.halt_reason in ("max_cost", "max_turns", "interrupted"):
            self.state.halt_reason = None  # a new message is a new attempt within the limits
        self.state.history.append({"role": "user", "content": [{"type": "text", "text": prompt}]})
        self._prompt, self._classified = prompt, None
        # Escalation: a failed fast-tier step is redone one tier up, once per request.
        floor: tuple[str, str] | None = None
        redo_of: int | None = None
        tool_errors: set[tuple[str, str, str]] = set()
        yield UserMessage(
            self._write({"type": "user", "text": prompt, "tokens": estimate_tokens(prompt)})
        )
        within_limits = (
            self.state.turns < self.limits.max_turns
            and self.ledger.spent < self.limits.max_cost_usd
        )
        if self.settings.router_classifier and self.tier == "auto" and within_limits:
            async for event in self._classify_call(prompt):
                yield event
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
            decision = self.route(floor)
            tier, model, reason = decision.tier, decision.model, decision.reason
            max_tokens = self.settings.max_tokens
            request = self._request(model, max_tokens)
            turn = self.state.turns + 1
            yield TurnStarted(turn, tier, model, max_tokens, reason, decision.candidates_record())
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
                self._settle_interrupted(turn, decision, max_tokens, partial, streamed, redo_of)
                raise
            assert result is not None
            self.state.turns = turn
            yield self._turn_record(turn, decision, max_tokens, result, redo_of)
            redo_of = None
            step_start = len(self.state.history)
            self.state.history.append({"role": "assistant", "content": _replayable(result.content)})
            may_escalate = self.tier == "auto" and tier == "fast" and floor is None
            failed = (
                step_failure(result.text, result.stop_reason, bool(result.tool_uses))
                if may_escalate
                else None
            )
            if failed is None and (result.stop_reason != "tool_use" or not result.tool_uses):
                return
            results: list[dict[str, Any]] = []
            for use in result.tool_uses if failed is None else []:
                yield ToolCallStarted(turn, use["id"], use["name"], use.get("input") or {})
                output = await self.toolbox.call(use["name"], use.get("input") or {})
                block: dict[str, Any] = {
                    "type": "tool_result",
                    "tool_use_id": use["id"],
                    "content": output.text,
                }
                if output.is_error:
                    block["is_error"] = True
                    seen = (use["name"], json.dumps(use.get("input"), sort_keys=True), output.text)
                    if seen in tool_errors and may_escalate:
                        failed = "the same tool error twice"
                    tool_errors.add(seen)
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
                            "result_tokens": estimate_tokens(output.text),
                        }
                    ),
                    output=output.text,
                    original=output.text,
                )
            self.state.history.append({"role": "user", "content": results})
            if failed is not None:
                # Redo this step one tier up: the failed step leaves the conversation (its
                # cost and records stay), and the rest of the request stays at that tier.
                del self.state.history[step_start:]
                up = step_up(tier)
                floor, redo_of = (up, f"escalated: fast-tier turn {turn} gave {failed}"), turn
                yield Notice(f"turn {turn} on the fast tier gave {failed}: redoing it on {up}")
            elif redo_of is None and floor is not None:
                floor = (floor[0], f"kept at {floor[0]} after the escalation")

    def _settle_interrupted(
        self,
        turn: int,
        decision: RouteDecision,
        max_tokens: int,
        partial: TokenUsage,
        streamed: list[str],
        escalated_from: int | None,
    ) -> None:
        text = "".join(streamed)
        output = max(partial.output_tokens, estimate_tokens(text))
        usage = TokenUsage(**{**partial.as_record(), "output_tokens": output})
        content = [{"type": "text", "text": text}] if text else []
        result = CallResult("", decision.model, content, "interrupted", usage, None, None, 0.0)
        self.state.turns = turn
        self._turn_record(turn, decision, max_tokens, result, escalated_from)
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
        decision: RouteDecision,
        max_tokens: int,
        result: CallResult,
        escalated_from: int | None = None,
        purpose: str = "agent",
    ) -> TurnFinished:
        model = decision.model
        cost = self.pricer.price(model, result.usage)
        self.ledger.add(result.usage, cost)
        if purpose == "agent":  # a helper call's prefix is not the conversation's
            self._calls_cache.note(model, result.usage, self.clock())
        return TurnFinished(
            self._write(
                {
                    "type": "turn",
                    "turn": turn,
                    "purpose": purpose,
                    "model": model,
                    "tier": decision.tier,
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
                    "route_reason": decision.reason,
                    "route_candidates": decision.candidates_record(),
                    "escalated_from_turn": escalated_from,
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
