"""The agent loop: call the model, stream, run tools, send results, until the answer or a limit.

It yields typed events (agent/events.py) and writes the run log itself, so the headless
runner and the UI consume the same stream and neither holds agent logic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic

from tuiagent.agent.compress import EXPAND_TOOL, Compressed, Compressor, summary_request
from tuiagent.agent.context import ContextManager
from tuiagent.agent.events import (
    AnswerDelta,
    AttemptFailed,
    CacheStateChanged,
    ContextEdited,
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
    RouteDecision,
    Router,
    step_failure,
    step_up,
    tier_named,
)
from tuiagent.agent.tools import Toolbox, ToolOutput
from tuiagent.agent.transcript import Transcript, transcript_path
from tuiagent.config import TIERS, Settings
from tuiagent.cost.budget import BudgetGuard, Reservation, estimated_with_margin
from tuiagent.cost.ledger import Ledger
from tuiagent.cost.pricing import Pricer, usd
from tuiagent.cost.runlog import RunLog, new_run_id, utc_now_iso
from tuiagent.llm.caching import (
    CacheTracker,
    api_miss_reason,
    count_breakpoints,
    plan_breakpoints,
    without_breakpoints,
)
from tuiagent.llm.client import (
    CallFailed,
    CallResult,
    TextDelta,
    ToolUseStarted,
    UsageUpdate,
    count_tokens,
    stream_message,
)
from tuiagent.llm.tokens import estimate_request_tokens, estimate_tokens
from tuiagent.llm.usage import TokenUsage


@dataclass
class Limits:
    max_cost_usd: Decimal
    max_turns: int


# Keep-warm acts in the last minute of a cache entry's life, with a one-token question.
KEEP_WARM_WINDOW_S = 60.0
KEEP_WARM_PING = "(keep-alive: no answer needed)"
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 8.0


@dataclass(frozen=True)
class Prepared:
    """A call ready to send: the route taken, the exact request, its reservation."""

    decision: RouteDecision
    request: dict[str, Any]
    reservation: Reservation
    purpose: str = "agent"
    escalated_from: int | None = None

    @property
    def tier(self) -> str:
        return self.decision.tier

    @property
    def model(self) -> str:
        return self.decision.model


def is_retryable(failure: CallFailed) -> bool:
    """429, 529, 5xx, connection errors, timeouts and mid-stream errors are transient;
    400, 401, 403, 404 (and the rest of 4xx) are not. The API's x-should-retry wins."""
    if failure.should_retry in ("true", "false"):
        return failure.should_retry == "true"
    if failure.status is None or failure.status == 200:
        return True
    return failure.status in (408, 409, 429) or failure.status >= 500


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
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.client = client
        self.provider = provider
        self.simulated = provider == "offline"
        self.toolbox = toolbox
        self.clock = clock
        self.pricer = Pricer(settings.prices)
        self.ledger = Ledger()
        self.budget = BudgetGuard(self.pricer, self.ledger, settings.min_useful_tokens)
        self._last_tier = settings.tier if settings.tier != "auto" else "balanced"
        self.retries_used = 0
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._random = random.Random()
        self.limits = Limits(settings.max_cost_usd, settings.max_turns)
        self.tier = settings.tier
        self.system_prompt = settings.resolved_system_prompt()
        self.state = RunState(run_id or new_run_id())
        self.log = RunLog(log_dir, self.state.run_id)
        self.transcript = Transcript(transcript_path(self.log.path))
        # Asked before a tool that acts on the world runs (the UI shows a dialog); None: allow.
        self.approve: Callable[[str, dict[str, Any]], Awaitable[bool]] | None = None
        # Large tool results are compressed; the originals stay here for expand_result.
        self.compressor = Compressor(settings.compress_over_tokens)
        if settings.compress or settings.context_management:
            toolbox.add(self.compressor.expand_tool())
        # Clearing old results and compaction (agent/context.py); limits are per request.
        self.context = ContextManager(self, self.compressor)
        self.working = False  # inside a request (send / go_on)
        self._request_start = 0  # self.state.turns when the request began
        # Events of helper calls made inside a step (a summary's turn), yielded by send().
        self._pending: list[Event] = []
        for tier in TIERS:
            self.pricer.ensure_priced(settings.model_for(tier))
        self.router = Router(settings.tiers, self.pricer, budget_floor=settings.router_budget_floor)
        # The prompt cache of each model, as this conversation left it: the router weighs it,
        # the turn records say why a call missed it, the UI counts down to its expiry.
        self.cache = CacheTracker()
        self.wall_clock = wall_clock
        # Diagnostics are asked of Anthropic's API and of the offline model; a gateway or
        # other compatible endpoint may reject the field, so it is not sent there.
        self.ask_diagnostics = self.simulated or not os.environ.get("ANTHROPIC_BASE_URL")
        self._prompt = ""  # the user's request being worked on, which the router reads
        self._classified: str | None = None  # the classifier's tier for it ("" for none)

    # --- records -----------------------------------------------------------

    def _write(self, record: dict[str, Any]) -> dict[str, Any]:
        record = {"type": record.pop("type"), "run_id": self.state.run_id, **record}
        self.log.append(record)
        return record

    def start(self, **extra: Any) -> RunStarted:
        """Write run_start; `extra` adds fields (a replay notes `replay_of`)."""
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
                    **extra,
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
                "cost_without_cache_usd": usd(self.ledger.cost_without_cache),
                "saved_by_cache_usd": usd(self.ledger.saved_by_cache),
                "cache_hit_rate": round(self.ledger.cache_hit_rate, 4),
            }
        )
        self.log.close()
        self.transcript.messages(self.state.history)  # the last answer, for replay
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
            cache=self.cache,
            now=self.wall_clock(),
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
            cache=self.cache,
            now=self.wall_clock(),
            pin=self.tier,
            purpose="classify",
        )
        text = [{"type": "text", "text": prompt}]

        def build(model: str) -> dict[str, Any]:
            return {
                "model": model,
                "max_tokens": 5,
                "system": CLASSIFIER_PROMPT,
                "messages": [{"role": "user", "content": text}],
            }

        async for item in self._call(self.state.turns + 1, "classify", decision, build):
            if isinstance(item, CallResult):
                self._classified = tier_named(item.text)
            else:
                yield item

    # --- the loop ----------------------------------------------------------

    def _request_body(self) -> dict[str, Any]:
        return {
            "system": self.system_prompt,
            "tools": self.toolbox.definitions(),
            "messages": self.state.history,
        }

    def _agent_request(self, model: str) -> dict[str, Any]:
        return self._request(model, self.settings.max_tokens)

    def _request(self, model: str, max_tokens: int) -> dict[str, Any]:
        request: dict[str, Any] = {"model": model, "max_tokens": max_tokens, **self._request_body()}
        if not self.settings.cache:
            return request
        if self.ask_diagnostics:
            # Ask the API why a call missed the cache: it compares with this previous call.
            previous = self.cache.last_message_id
            request["diagnostics"] = {"previous_message_id": previous}
        return plan_breakpoints(request, model, self.settings.cache_ttl)

    async def keep_warm(self) -> AsyncIterator[Event]:
        """While the user is idle: refresh the conversation's cache just before it expires,
        when a refresh costs less than the miss it prevents and fits the budget. The app
        calls this now and then; each decision is logged (a `keep_warm` record) with its
        reason. Off unless the config says `keep_warm = true`."""
        model = self.cache.last_model
        if not self.settings.keep_warm or not self.settings.cache or model is None:
            return
        state = self.cache.models[model]
        now = self.wall_clock()
        if state.expires_at is None or now >= state.expires_at:
            return  # nothing warm to keep
        left = state.expires_at - now
        if left > KEEP_WARM_WINDOW_S:
            return  # not close to expiry yet
        prefix = state.cached_prefix_tokens
        request = plan_breakpoints(
            {"model": model, "max_tokens": 1, **self._request_body()},
            model,
            self.settings.cache_ttl,
        )
        request["messages"] = [*request["messages"], {"role": "user", "content": KEEP_WARM_PING}]
        total = estimate_request_tokens(request)
        rates = self.pricer.rates(model, total)
        # A refresh reads the prefix and writes what was added since; a miss on the next
        # turn writes the whole prefix again instead of reading it.
        refresh = (
            rates.cache_read * prefix + rates.cache_write_5m * max(0, total - prefix) + rates.output
        )
        miss = (rates.cache_write_5m - rates.cache_read) * prefix
        remaining = self.limits.max_cost_usd - self.ledger.spent
        if refresh >= miss:
            action, reason = "skip", "a refresh would cost more than the miss it prevents"
        elif refresh > remaining:
            action, reason = "skip", "a refresh does not fit what is left of the cap"
        else:
            action, reason = "refresh", "a refresh costs less than a miss on the next turn"
        self._write(
            {
                "type": "keep_warm",
                "model": model,
                "cached_prefix_tokens": prefix,
                "expires_in_s": round(left, 1),
                "refresh_cost_usd": usd(refresh),
                "miss_cost_usd": usd(miss),
                "action": action,
                "reason": reason,
            }
        )
        yield Notice(f"keep-warm on {model}: {action} ({reason})")
        if action != "refresh":
            return
        tier = self.settings.tier_of(model) or self._last_tier
        decision = RouteDecision(tier, model, "keep-warm: refresh the cache before it expires")
        turn = self.state.turns
        async for item in self._call(turn, "keep_warm", decision, lambda _m: dict(request)):
            if isinstance(item, CallResult):
                self.cache.note(model, item.usage, self.settings.cache_ttl, self.wall_clock(), None)
                yield self._cache_state(model)
            else:
                yield item

    def _begin_request(self) -> None:
        """Each request gets its own max_turns and max_retries; the cap is the session's."""
        if self.state.halt_reason != "error":
            self.state.halt_reason = None  # a new attempt within the limits
        self._request_start, self.retries_used, self.working = self.state.turns, 0, True

    async def send(self, prompt: str) -> AsyncIterator[Event]:
        """Work on one user message until the answer or a limit."""
        self._begin_request()
        self.state.history.append({"role": "user", "content": [{"type": "text", "text": prompt}]})
        self._prompt, self._classified = prompt, None
        yield UserMessage(
            self._write({"type": "user", "text": prompt, "tokens": estimate_tokens(prompt)})
        )
        try:
            classify = self.settings.router_classifier and self.tier == "auto"
            if classify and self.ledger.spent < self.limits.max_cost_usd:
                async for event in self._classify_call(prompt):
                    yield event
            async for event in self._work():
                yield event
        finally:
            self.working = False

    async def go_on(self) -> AsyncIterator[Event]:
        """Go on with the request a limit halted (after /turns N), with fresh limits."""
        self._begin_request()
        try:
            async for event in self._work():
                yield event
        finally:
            self.working = False

    def set_max_turns(self, turns: int) -> None:
        if turns < 1:
            raise ValueError("max_turns must be at least 1")
        self.limits.max_turns = turns

    def take_pending(self) -> list[Event]:
        """The events of helper calls made since, for the caller to yield."""
        events, self._pending = self._pending, []
        return events

    def clear_conversation(self) -> ContextEdited:
        """/clear: the next request starts with no earlier messages; the budget goes on."""
        return self.context.clear()

    async def compact(self) -> AsyncIterator[Event]:
        """/compact: summarise the conversation now."""
        async for event in self.context.compact("asked for (/compact)"):
            yield event

    async def _work(self) -> AsyncIterator[Event]:
        """Model calls and tools for the current request until the answer or a limit."""
        # Escalation: a failed fast-tier step is redone one tier up, once per request.
        floor: tuple[str, str] | None = None
        redo_of: int | None = None
        tool_errors: set[tuple[str, str, str]] = set()
        while True:
            if self.state.turns - self._request_start >= self.limits.max_turns:
                yield self._halt(
                    "max_turns",
                    f"this request used its {self.limits.max_turns} model calls (max_turns); "
                    "/turns N allows more and goes on",
                )
                return
            async for event in self.context.before_call():
                yield event
            if (too_long := self.context.over_window()) is not None:
                yield self._halt("context", too_long)
                return
            decision = self.route(floor)
            turn = self.state.turns + 1
            result: CallResult | None = None
            build = self._agent_request
            async for item in self._call(turn, "agent", decision, build, redo_of):
                if isinstance(item, CallResult):
                    result = item
                else:
                    yield item
            if result is None:
                return  # halted or failed: the events said why
            tier = self._last_tier
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
            if failed is not None:
                # Redo this step one tier up: the failed step leaves the conversation (its
                # cost and records stay), and the rest of the request stays at that tier.
                del self.state.history[step_start:]
                up = step_up(tier)
                floor, redo_of = (up, f"escalated: fast-tier turn {turn} gave {failed}"), turn
                yield Notice(f"turn {turn} on the fast tier gave {failed}: redoing it on {up}")
            elif redo_of is None and floor is not None:
                floor = (floor[0], f"kept at {floor[0]} after the escalation")

    async def _run_tool(self, name: str, args: dict[str, Any]) -> ToolOutput:
        tool = self.toolbox.tools.get(name)
        asks = tool is not None and tool.needs_approval and self.approve is not None
        if asks and self.approve is not None and not await self.approve(name, args):
            return ToolOutput(f"error: the user declined to run {name}", is_error=True)
        return await self.toolbox.call(name, args)

    # --- tool results: compression and summaries ----------------------------

    async def _shrink(self, tool: str, text: str) -> Compressed:
        """What the model sees of a tool result; a compressed one's original is kept."""
        if not self.settings.compress:
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

        It goes through `_call` like every call: reserved within the cap, retried within
        the run's retry budget, logged as its own `turn` record with its `purpose`. Its
        events wait in `_pending` for send() to yield. Raises CallFailed when it was not
        made or did not complete (the events say why).
        """
        model = request["model"]
        tier = self.settings.tier_of(model) or "fast"
        decision = RouteDecision(tier, model, f"{purpose}: helper call on the {tier} tier")

        def build(chosen: str) -> dict[str, Any]:
            return {**request, "model": chosen}

        result: CallResult | None = None
        async for item in self._call(self.state.turns, purpose, decision, build):
            if isinstance(item, CallResult):
                result = item
            else:
                self._pending.append(item)
        if result is None:
            raise CallFailed(message=f"the {purpose} call was not made or did not complete")
        return result

    async def _prepare(
        self,
        decision: RouteDecision,
        build: Callable[[str], dict[str, Any]],
        purpose: str,
        escalated_from: int | None,
    ) -> Prepared | None:
        """Reserve the call's worst case within the cap (agent turns and helper calls alike).

        When even a useful minimum of output does not fit, an auto tier steps down to a
        cheaper one; a pinned tier (or the cheapest) gets None: nothing is sent.
        """
        tiers = [decision.tier]
        if self.tier == "auto" and decision.tier in TIERS:
            tiers += list(reversed(TIERS[: TIERS.index(decision.tier)]))
        remaining = self.limits.max_cost_usd - self.ledger.spent
        for tier in tiers:
            model = decision.model if tier == decision.tier else self.settings.model_for(tier)
            request = build(model)
            counted, source = await self._count_input(request)
            reservation = self.budget.reserve(model, request, counted, source, remaining)
            if reservation is None and count_breakpoints(request):
                # Close to the cap: without cache markers nothing can be written, so no
                # input is reserved at the write premium; this call may still fit.
                request = without_breakpoints(request)
                reservation = self.budget.reserve(model, request, counted, source, remaining)
            if reservation is None:
                continue
            request["max_tokens"] = reservation.max_tokens
            if tier != decision.tier:
                why = f"{decision.reason}; stepped down from {decision.tier}: a useful answer did not fit the cap"
                decision = dataclasses.replace(decision, tier=tier, model=model, reason=why)
            return Prepared(decision, request, reservation, purpose, escalated_from)
        return None

    async def _count_input(self, request: dict[str, Any]) -> tuple[int, str]:
        """The request's input tokens from the API's free count (the offline model's own
        offline); if no count can be had, the local estimate with its safety margin."""
        try:
            return await count_tokens(self.client, request), "count_tokens"
        except CallFailed as failure:
            if failure.status in (401, 403, 404):
                raise
            return estimated_with_margin(estimate_request_tokens(request)), "estimate"

    async def _call(
        self,
        turn: int,
        purpose: str,
        decision: RouteDecision,
        build: Callable[[str], dict[str, Any]],
        escalated_from: int | None = None,
    ) -> AsyncIterator[Event | CallResult]:
        """Every model call goes through here: reserve within the cap, stream, and on a
        transient failure wait and try again within the run's retry budget. Yields events,
        then the CallResult if the call completed. A helper call (purpose other than
        "agent") that does not fit or fails is skipped; an agent turn halts the run."""
        helper = purpose != "agent"
        attempt = 0
        while True:
            attempt += 1
            try:
                prepared = await self._prepare(decision, build, purpose, escalated_from)
            except CallFailed as failure:  # count_tokens refused: a bad key, an unknown model
                yield self._fail(failure, helper)
                return
            if prepared is None:
                left = self.limits.max_cost_usd - self.ledger.spent
                if helper:
                    yield Notice(f"skipped the {purpose} call: it did not fit the ${left:.4f} left")
                    return
                yield self._halt(
                    "max_cost",
                    f"spent ${self.ledger.spent:.4f} of the ${self.limits.max_cost_usd} cap; "
                    f"${left:.4f} left is less than the next call could cost",
                )
                return
            p = prepared
            if not helper:
                self._last_tier = p.tier
            yield TurnStarted(
                turn,
                p.tier,
                p.model,
                p.request["max_tokens"],
                p.decision.reason,
                p.decision.candidates_record(),
                attempt,
            )
            self.transcript.request(turn, purpose, p.request)
            partial, streamed = TokenUsage(), []
            try:
                async for item in stream_message(self.client, p.request, clock=self.clock):
                    if isinstance(item, TextDelta):
                        streamed.append(item.text)
                        if not helper:
                            yield AnswerDelta(turn, item.text)
                    elif isinstance(item, UsageUpdate):
                        partial = item.usage
                    elif isinstance(item, ToolUseStarted):
                        yield ToolCallStarted(turn, item.tool_use_id, item.name, {})
                    else:
                        self.state.turns = turn
                        yield self._turn_record(turn, p, item)
                        if not helper:
                            yield self._cache_state(p.model)
                        yield item
                        return
            except CallFailed as failure:
                if not is_retryable(failure):
                    yield self._attempt(turn, p, failure, None)
                    yield self._fail(failure, helper)
                    return
                if self.retries_used >= self.settings.max_retries:
                    yield self._attempt(turn, p, failure, None)
                    if helper:
                        yield Notice(f"the {purpose} call failed: {failure}", "warning")
                        return
                    yield self._halt(
                        "max_retries",
                        f"{failure}; this request's {self.settings.max_retries} retries are "
                        "used up (each message gets its own: send it again to retry)",
                    )
                    return
                wait = self.backoff(self.retries_used, failure.retry_after_s)
                self.retries_used += 1
                yield self._attempt(turn, p, failure, wait)
                yield Notice(f"{failure}; retry {self.retries_used} in {wait:.1f}s", "warning")
                await self.sleep(wait)
            except asyncio.CancelledError:
                # Interrupted (Escape, Ctrl-C): what streamed stays, and its cost counts.
                self._settle_interrupted(turn, p, partial, streamed)
                raise

    def backoff(self, retries_so_far: int, retry_after_s: float | None) -> float:
        """Exponential backoff with jitter; the server's retry-after wins when it says."""
        if retry_after_s is not None and retry_after_s >= 0:
            return min(retry_after_s, self.settings.retry_max_wait_s)
        base = min(RETRY_INITIAL_S * 2.0**retries_so_far, RETRY_MAX_S)
        return float(base / 2 + self._random.uniform(0, base / 2))

    def _fail(self, failure: CallFailed, helper: bool = False) -> Notice:
        """A failure that is not retried: it ends an agent turn; a helper call is skipped."""
        if helper:
            return Notice(f"a helper call failed and was skipped: {failure}", "warning")
        self.state.halt_reason = "error"
        return Notice(str(failure), "error")

    def _settle_interrupted(
        self, turn: int, p: Prepared, partial: TokenUsage, streamed: list[str]
    ) -> None:
        text = "".join(streamed)
        output = max(partial.output_tokens, estimate_tokens(text))
        usage = TokenUsage(**{**partial.as_record(), "output_tokens": output})
        content = [{"type": "text", "text": text}] if text else []
        result = CallResult("", p.model, content, "interrupted", usage, None, None, 0.0)
        self.state.turns = turn
        self._turn_record(turn, p, result)
        if text and p.purpose == "agent":
            self.state.history.append({"role": "assistant", "content": content})
        self.state.halt_reason = "interrupted"

    def _cache_state(self, model: str) -> CacheStateChanged:
        state = self.cache.models[model]
        return CacheStateChanged(
            model,
            state.cached_prefix_tokens,
            state.last_write_at,
            state.last_read_at,
            state.expires_at,
        )

    def _halt(self, reason: str, detail: str) -> Halted:
        self.state.halt_reason = reason
        return Halted(reason, detail)

    def _turn_record(self, turn: int, p: Prepared, result: CallResult) -> TurnFinished:
        model, purpose, decision = p.model, p.purpose, p.decision
        usage = result.usage
        cost = self.pricer.price(model, usage)
        without_cache = self.pricer.without_cache(model, usage)
        self.ledger.add(usage, cost, without_cache=without_cache)
        miss_reason = None
        if purpose == "agent":  # a helper call's prefix is not the conversation's
            now = self.wall_clock()
            miss_reason = self.cache.miss_reason(
                model,
                usage,
                now,
                p.request,
                api_miss_reason(result.diagnostics),
                self.settings.cache,
            )
            self.cache.note(model, usage, self.settings.cache_ttl, now, result.message_id or None)
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
                    "context_tokens": usage.total_input_tokens,
                    "context_window": self.context.window_of(model),
                    "cost_usd": usd(cost.total),
                    "cost_breakdown_usd": cost.as_record(),
                    "cumulative_cost_usd": usd(self.ledger.spent),
                    "max_tokens": p.request["max_tokens"],
                    "max_tokens_requested": p.reservation.requested_max_tokens,
                    "input_tokens_counted": p.reservation.input_tokens,
                    "input_count_source": p.reservation.token_source,
                    "reserved_usd": usd(p.reservation.worst_case_usd),
                    "stop_reason": result.stop_reason,
                    "latency_s": round(result.latency_s, 4),
                    "ttft_s": None if result.ttft_s is None else round(result.ttft_s, 4),
                    "ended_at": utc_now_iso(),
                    "request_id": result.request_id,
                    "message_id": result.message_id,
                    "route_reason": decision.reason,
                    "route_candidates": decision.candidates_record(),
                    "escalated_from_turn": p.escalated_from,
                    "cache_miss_reason": miss_reason,
                    "cost_without_cache_usd": usd(without_cache),
                    "saved_by_cache_usd": usd(without_cache - cost.total),
                    "tool_calls": [u["name"] for u in result.tool_uses],
                }
            )
        )

    def _attempt(
        self, turn: int, p: Prepared, failure: CallFailed, retry_in_s: float | None
    ) -> AttemptFailed:
        tier, model = p.tier, p.model
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
                    "retry_in_s": None if retry_in_s is None else round(retry_in_s, 3),
                    "retries_used": self.retries_used,
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
