"""The one metered call: plan -> count -> reserve -> send -> stream -> settle -> record.

Every model call goes through `Caller.call`: agent turns, summaries, the classifier,
keep-warm, replay (and sub-agents and the proxy, through `plan_reservation`). The money
invariant lives here and nowhere else: a call is reserved at its worst case before it is
sent (`Budget.reserve`), held in flight while it streams, and in a `finally` settled and
written to the run log exactly once (a `turn` or an `attempt` record), whatever the server
sends and whatever is raised (cancellation and signals included). Where the request left
but no usage came back, its worst case stays spent (`"usage_unknown": true`).

Numbers from the server are checked against what was reserved: a count below the local
estimate is not believed, usage above the reservation is recorded as billed and flagged
(`"over_reservation": true`), and later reservations on that model take the larger figure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import anthropic

from tuiagent.agent.events import (
    AnswerDelta,
    AttemptFailed,
    BudgetChanged,
    CacheStateChanged,
    Event,
    Notice,
    ToolCallStarted,
    TurnFinished,
    TurnStarted,
)
from tuiagent.agent.router import RouteDecision
from tuiagent.config import TIERS, Settings
from tuiagent.cost.budget import (
    Budget,
    Hold,
    Reservation,
    estimated_with_margin,
    least_useful_cost,
    plan_reservation,
)
from tuiagent.cost.display import cap as show_cap
from tuiagent.cost.display import money as show_money
from tuiagent.cost.ledger import Ledger
from tuiagent.cost.pricing import Cost, Pricer, UnpricedModelError
from tuiagent.llm.caching import (
    CacheTracker,
    api_miss_reason,
    count_breakpoints,
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
from tuiagent.llm.tokens import PER_MESSAGE_OVERHEAD, estimate_request_tokens, estimate_tokens
from tuiagent.llm.usage import TokenUsage
from tuiagent.llm.window import context_window
from tuiagent.runs.log import Writer, utc_now_iso
from tuiagent.runs.records import Attempt, HaltReason, Turn
from tuiagent.runs.transcript import Transcript

MAX_PLAUSIBLE_TOKENS = 10**9  # usage beyond this is a broken server, not a bill
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 8.0


@dataclass(frozen=True)
class CallSpec:
    """What to call: the route, how to build the request for a model, and how it is used."""

    turn: int
    purpose: str  # agent | summarize | classify | keep_warm
    decision: RouteDecision
    build: Callable[[str], dict[str, Any]]
    step_down: bool = False  # an auto-routed call may step down a tier to fit the cap
    escalated_from: int | None = None
    stream_text: bool = False  # yield AnswerDelta events as the text streams
    conversation: bool = False  # its messages are the conversation's (cache, prefix reuse)


@dataclass(frozen=True)
class CallEnd:
    """The last item of every call: its result, or why there is none.

    reason: None (completed), max_cost (no useful call fits), max_retries, error (a failure
    not retried), or "skipped" (a helper call that did not fit or failed).
    """

    result: CallResult | None
    reason: HaltReason | Literal["skipped"] | None = None
    detail: str = ""
    tier: str = ""  # the tier the call was made on (after any step-down)
    needed_usd: Decimal | None = None  # "max_cost": what the cheapest useful call needs


@dataclass(frozen=True)
class Prepared:
    """A call ready to send: the route taken, the exact request, its reservation."""

    decision: RouteDecision
    request: dict[str, Any]
    reservation: Reservation

    @property
    def model(self) -> str:
        return self.decision.model


def is_retryable(failure: CallFailed) -> bool:
    """429, 529, 5xx, connection errors, timeouts and mid-stream errors are transient;
    400, 401, 403, 404 (and the rest of 4xx) are not. The API's x-should-retry wins. A
    request that could not be built (so never left) would not be built on a retry either."""
    if not failure.sent and failure.error_type == "client_error":
        return False
    if failure.should_retry in ("true", "false"):
        return failure.should_retry == "true"
    if failure.error_type in ("timeout", "connection_error"):
        return True
    if failure.error_type == "bad_response":  # unreadable: a retry may well read
        return True
    if failure.status is None or failure.status == 200:
        return True
    return failure.status in (408, 409, 429) or failure.status >= 500


def usage_unknown(failure: CallFailed) -> bool:
    """The request left and the server may have billed it, but no usage came back: an
    answer that dropped before message_start, a timeout, an unreadable stream. (An HTTP
    error status bills nothing.)"""
    return failure.sent and not failure.usage_seen and failure.status in (None, 200)


def _unmarked(blocks: Any) -> Any:
    """Blocks as the API reads them, cache markers aside (they move every call)."""
    if isinstance(blocks, str):
        return [{"type": "text", "text": blocks}] if blocks else []
    if not isinstance(blocks, list):
        return blocks
    return [
        {k: v for k, v in b.items() if k != "cache_control"} if isinstance(b, dict) else b
        for b in blocks
    ]


def _hash(value: Any) -> str:
    data = json.dumps(value, sort_keys=True, default=str)
    return hashlib.blake2b(data.encode(), digest_size=16).hexdigest()


def _digest(message: dict[str, Any]) -> str:
    return _hash([message.get("role"), _unmarked(message.get("content"))])


def _frame_digest(request: dict[str, Any]) -> str:
    """Everything but the messages: model, tools, system."""
    return _hash(
        [request.get("model"), _unmarked(request.get("tools")), _unmarked(request.get("system"))]
    )


@dataclass
class _Prefix:
    """The last conversation call: its exact size, billed, and what it was made of."""

    frame: str
    messages: list[str]
    tokens: int  # its total input + its output: the exact size of the unchanged prefix


@dataclass
class _Calibration:
    """What one model's server has shown beyond what was reserved (factors >= 1)."""

    input_factor: Decimal = Decimal(1)
    output_factor: Decimal = Decimal(1)


@dataclass
class _Seen:
    """What an attempt has seen so far."""

    usage: TokenUsage = field(default_factory=TokenUsage)
    usage_seen: bool = False
    updates: int = 0  # usage reports: message_start's, then message_delta's (the final one)
    text: list[str] = field(default_factory=list)
    result: CallResult | None = None
    failure: CallFailed | None = None


class Caller:
    """The metered call of one run: its budget, ledger, retries, calibration and prefix."""

    def __init__(
        self,
        settings: Settings,
        *,
        client: anthropic.AsyncAnthropic,
        pricer: Pricer,
        budget: Budget,
        write: Writer,
        transcript: Transcript,
        simulated: bool,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        ledger: Ledger | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.pricer = pricer
        self.budget = budget
        self.ledger = ledger if ledger is not None else Ledger()
        self.write = write
        self.transcript = transcript
        self.simulated = simulated
        self.clock = clock
        self.wall_clock = wall_clock
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self.random = random.Random()
        self.retries_used = 0
        self.count_calls = 0  # count_tokens round trips made (the bench reads it)
        self.cache = CacheTracker()
        self._prefix: _Prefix | None = None
        self._calibration: dict[str, _Calibration] = {}
        self._count_available = True
        self._pending_wait: float | None = None
        self._needed: Decimal | None = None  # see _plan
        self.started_at = ""  # when the call in progress was sent (wall clock, ISO-8601)
        # What streamed of a call that was interrupted (the loop keeps it in the history).
        self.interrupted_content: list[dict[str, Any]] = []
        self.last_call: Turn | None = None  # the last `turn` record written

    # --- the call ------------------------------------------------------------

    async def call(self, spec: CallSpec) -> AsyncGenerator[Event | CallEnd, None]:
        """Yields the call's events, then one CallEnd. Transient failures are retried
        within the run's retry budget; a helper call that does not fit or fails is
        skipped (reason "skipped"), an agent call ends with why."""
        helper = spec.purpose != "agent"
        attempt = 0
        while True:
            attempt += 1
            try:
                prepared = await self._prepare(spec)
            except CallFailed as failure:  # count_tokens refused: a bad key, an unknown model
                yield Notice(str(failure), "warning" if helper else "error")
                yield CallEnd(None, "skipped" if helper else HaltReason.ERROR, str(failure))
                return
            if prepared is None:
                left = self.budget.remaining
                if helper:
                    yield Notice(
                        f"skipped the {spec.purpose} call: it did not fit the {show_money(left)} left"
                    )
                    yield CallEnd(None, "skipped")
                    return
                needed = self._needed if self._needed is not None else left
                places = 4  # enough places that what is left and what is needed differ
                while places < 9 and round(left, places) >= round(needed, places):
                    places += 1
                yield CallEnd(
                    None,
                    HaltReason.MAX_COST,
                    f"spent {show_money(self.budget.settled, places)} of the "
                    f"{show_cap(self.budget.cap)} cap: {show_money(left, places)} left, "
                    f"the next call needs up to {show_money(needed, places)}",
                    needed_usd=needed,
                )
                return
            p, res = prepared, prepared.reservation
            hold = self.budget.reserve(res.worst_case_usd, f"turn {spec.turn} {spec.purpose}")
            if hold is None:  # pragma: no cover - planned within budget.remaining just now
                yield CallEnd(None, "skipped" if helper else HaltReason.MAX_COST, "the cap moved")
                return
            yield BudgetChanged(self.budget.snapshot())
            yield TurnStarted(
                spec.turn,
                p.decision.tier,
                p.model,
                p.request["max_tokens"],
                p.decision.reason,
                p.decision.candidates_record(),
                attempt,
            )
            self.transcript.request(spec.turn, spec.purpose, p.request)
            seen = _Seen()
            self.started_at = utc_now_iso()  # a Caller makes one call at a time
            events: list[Event] = []
            stream = stream_message(
                self.client,
                p.request,
                clock=self.clock,
                call_timeout_s=self.settings.run.call_timeout_s,
                idle_timeout_s=self.settings.run.stream_idle_timeout_s,
            )
            try:
                async for item in stream:
                    if isinstance(item, TextDelta):
                        seen.text.append(item.text)
                        if spec.stream_text:
                            yield AnswerDelta(spec.turn, item.text)
                    elif isinstance(item, UsageUpdate):
                        seen.usage, seen.usage_seen = item.usage, True
                        seen.updates += 1
                    elif isinstance(item, ToolUseStarted):
                        if spec.stream_text:
                            yield ToolCallStarted(spec.turn, item.tool_use_id, item.name, {})
                    else:
                        seen.result = item
            except CallFailed as failure:
                seen.failure = failure
            except Exception as exc:
                seen.failure = CallFailed(
                    message=f"the response could not be read ({type(exc).__name__}: {exc})",
                    partial_usage=seen.usage,
                    status=200,
                    error_type="bad_response",
                )
                seen.failure.usage_seen = seen.usage_seen
            finally:
                # The accounting of every way an attempt ends, exactly once: a result, a
                # failure, or neither (cancelled, a signal, the consumer closed this call).
                events = self._account(spec, p, hold, seen)
                await stream.aclose()
            for event in events:
                yield event
            if seen.result is not None:
                yield CallEnd(seen.result, tier=p.decision.tier)
                return
            failed = seen.failure
            assert failed is not None
            if not is_retryable(failed):
                yield Notice(str(failed), "warning" if helper else "error")
                yield CallEnd(None, "skipped" if helper else HaltReason.ERROR, str(failed))
                return
            wait = self._pending_wait  # set by the accounting: None when used up
            if wait is None:
                detail = (
                    f"{failed}; this request's {self.settings.run.max_retries} retries are used up "
                    "(each message gets its own: send it again to retry)"
                )
                yield Notice(detail, "warning")
                yield CallEnd(None, "skipped" if helper else HaltReason.MAX_RETRIES, detail)
                return
            yield Notice(f"{failed}; retry {self.retries_used} in {wait:.1f}s", "warning")
            await self.sleep(wait)

    def backoff(self, retries_so_far: int, retry_after_s: float | None) -> float:
        """Exponential backoff with jitter; the server's retry-after wins when it says."""
        if retry_after_s is not None and retry_after_s >= 0:
            return min(retry_after_s, self.settings.run.retry_max_wait_s)
        base = min(RETRY_INITIAL_S * 2.0**retries_so_far, RETRY_MAX_S)
        return float(base / 2 + self.random.uniform(0, base / 2))

    # --- before: plan, count, reserve ----------------------------------------

    def _tiers(self, spec: CallSpec) -> list[str]:
        tiers = [spec.decision.tier]
        if spec.step_down and spec.decision.tier in TIERS:
            tiers += list(reversed(TIERS[: TIERS.index(spec.decision.tier)]))
        return tiers

    async def _prepare(self, spec: CallSpec) -> Prepared | None:
        """Reserve the call's worst case within what is left of the cap.

        When even a useful minimum of output does not fit, an auto-routed call steps down
        to a cheaper tier; otherwise None: nothing is sent.
        """
        decision = spec.decision
        self._needed = None
        for tier in self._tiers(spec):
            model = (
                decision.model if tier == decision.tier else self.settings.router.model_for(tier)
            )
            request = spec.build(model)
            reservation = await self._reserve_for(model, request, spec.conversation)
            if reservation is None and count_breakpoints(request):
                # Close to the cap: without cache markers nothing can be written, so no
                # input is reserved at the write premium; this call may still fit.
                request = without_breakpoints(request)
                reservation = await self._reserve_for(model, request, spec.conversation)
            if reservation is None:
                continue
            request["max_tokens"] = reservation.max_tokens
            if tier != decision.tier:
                why = f"{decision.reason}; stepped down from {decision.tier}: a useful answer did not fit the cap"
                decision = dataclasses.replace(decision, tier=tier, model=model, reason=why)
            return Prepared(decision, request, reservation)
        return None

    def _plan(
        self, model: str, request: dict[str, Any], tokens: int, source: str
    ) -> Reservation | None:
        cal = self._calibration.get(model, _Calibration())
        planned = plan_reservation(
            self.pricer,
            model,
            request,
            tokens,
            source,
            self.budget.remaining,
            self.settings.run.min_useful_tokens,
            input_factor=cal.input_factor,
            output_factor=cal.output_factor,
        )
        if planned is None:  # what it would take: the least of the tiers tried
            least = least_useful_cost(
                self.pricer, model, request, tokens, self.settings.run.min_useful_tokens
            )
            self._needed = least if self._needed is None else min(self._needed, least)
        return planned

    async def _reserve_for(
        self, model: str, request: dict[str, Any], conversation: bool
    ) -> Reservation | None:
        """Pre-flight without a round trip where it cannot change the outcome: the exact
        size of the prefix the previous call billed, plus the new part estimated with the
        margin. count_tokens is asked only when the prefix changed (first call, another
        model, system or tools changed, the history edited) or when the new part's
        uncertainty could decide whether the call fits."""
        estimate = estimate_request_tokens(request)
        known = self._known_prefix(request) if conversation else None
        if known is not None:
            prefix_tokens, new_estimate = known
            upper = prefix_tokens + estimated_with_margin(new_estimate)
            res = self._plan(model, request, max(upper, estimate), "prefix+estimate")
            if res is not None and res.max_tokens == res.requested_max_tokens:
                return res  # fits whole: a count could not change that
        counted, source = await self._count_input(request, estimate)
        return self._plan(model, request, counted, source)

    def _known_prefix(self, request: dict[str, Any]) -> tuple[int, int] | None:
        """(exact prefix tokens, estimate of the new part) when this request only appends
        to the previous conversation call; None when the prefix changed."""
        prev = self._prefix
        messages = request.get("messages") or []
        if prev is None or len(messages) <= len(prev.messages):
            return None
        if _frame_digest(request) != prev.frame:
            return None
        n = len(prev.messages)
        if [_digest(m) for m in messages[:n]] != prev.messages:
            return None
        # messages[n] is the answer the previous call gave (in its output tokens).
        new = messages[n + 1 :]
        return prev.tokens, estimate_request_tokens({"messages": new}) + PER_MESSAGE_OVERHEAD

    async def _count_input(self, request: dict[str, Any], estimate: int) -> tuple[int, str]:
        """The request's input tokens from the API's free count (the offline model's own
        offline), never below the local estimate; where no count can be had (a gateway
        without count_tokens, a bad count, an error), the estimate with its margin."""
        if self._count_available:
            self.count_calls += 1
            try:
                counted = await count_tokens(self.client, request)
            except CallFailed as failure:
                if failure.status in (401, 403):
                    raise
                if failure.status == 404:
                    self._count_available = False  # this endpoint has none: stop asking
            except Exception:
                pass
            else:
                if isinstance(counted, int) and counted >= 0:
                    return max(counted, estimate), "count_tokens"
        return estimated_with_margin(estimate), "estimate"

    # --- after: settle and record, exactly once -----------------------------

    def _account(self, spec: CallSpec, p: Prepared, hold: Hold, seen: _Seen) -> list[Event]:
        """Settle the hold and write the attempt's one record. Runs in a `finally`: with a
        result, with a failure, or with neither (cancelled, a signal, the consumer gone)."""
        self._pending_wait = None
        if seen.result is not None:
            return self._settle_turn(spec, p, hold, seen.result)
        if seen.failure is not None:
            return self._settle_failure(spec, p, hold, seen.failure, seen.updates)
        return self._settle_interrupted(spec, p, hold, seen)

    def _price(self, p: Prepared, usage: TokenUsage, response_model: str) -> tuple[Cost, str]:
        """The cost of `usage`: as the response's model where it differs and can be priced,
        never below the requested model's price."""
        cost = self.pricer.price(p.model, usage)
        if response_model and response_model != p.model:
            try:
                other = self.pricer.price(response_model, usage)
            except (UnpricedModelError, LookupError):
                return cost, p.model
            if other.total >= cost.total:
                return other, response_model
        return cost, p.model

    def _billed(
        self, p: Prepared, usage: TokenUsage, hold: Hold, response_model: str
    ) -> tuple[TokenUsage, Cost, str, dict[str, Any]]:
        """What to settle for this usage: its price, checked against the reservation. Usage
        no server can mean (negative, or beyond a billion tokens) is not believed: the
        reservation's worst case stays spent."""
        values = usage.as_record().values()
        if any(v < 0 or v > MAX_PLAUSIBLE_TOKENS for v in values):
            return TokenUsage(), self._worst_case_cost(p), p.model, {"usage_unknown": True}
        cost, priced_as = self._price(p, usage, response_model)
        return usage, cost, priced_as, self._checks(p, usage, cost, hold)

    def _worst_case_cost(self, p: Prepared) -> Cost:
        res = p.reservation
        out = self.pricer.rates(p.model, res.input_tokens).output * res.output_tokens
        return Cost(input=res.worst_case_usd - out, output=out)

    def _checks(self, p: Prepared, usage: TokenUsage, cost: Cost, hold: Hold) -> dict[str, Any]:
        """Usage beyond what was reserved: flagged, and later reservations take it."""
        res = p.reservation
        over_out = usage.output_tokens > p.request["max_tokens"]
        over_in = usage.total_input_tokens > res.input_tokens
        if not (over_out or over_in or cost.total > hold.amount):
            return {}
        cal = self._calibration.setdefault(p.model, _Calibration())
        if over_in and res.input_tokens > 0:
            ratio = Decimal(usage.total_input_tokens) / Decimal(res.input_tokens)
            cal.input_factor = max(cal.input_factor, cal.input_factor * ratio)
        if over_out:
            ratio = Decimal(usage.output_tokens) / Decimal(max(1, p.request["max_tokens"]))
            cal.output_factor = max(cal.output_factor, ratio)
        return {"over_reservation": True}

    def _settle_turn(
        self, spec: CallSpec, p: Prepared, hold: Hold, result: CallResult
    ) -> list[Event]:
        response_model = result.response_model or result.model
        usage, cost, priced_as, flags = self._billed(p, result.usage, hold, response_model)
        result = dataclasses.replace(result, usage=usage)
        hold.settle(cost.total)
        miss_reason = None
        model = p.model
        if spec.conversation:  # a helper call's prefix is not the conversation's
            now = self.wall_clock()
            miss_reason = self.cache.miss_reason(
                model,
                usage,
                now,
                p.request,
                api_miss_reason(result.diagnostics),
                self.settings.cache.enabled,
            )
            self.cache.note(model, usage, self.settings.cache.ttl, now, result.message_id or None)
            self._prefix = _Prefix(
                _frame_digest(p.request),
                [_digest(m) for m in p.request.get("messages") or []],
                usage.total_input_tokens + usage.output_tokens,
            )
        elif spec.purpose == "keep_warm":
            self.cache.note(model, usage, self.settings.cache.ttl, self.wall_clock(), None)
        cut = list(result.cut_tool_calls)
        if response_model != model:
            flags["model_mismatch"] = response_model
        record = self._write_turn(spec, p, result, cost, priced_as, flags, miss_reason, cut)
        events: list[Event] = [TurnFinished(record), BudgetChanged(self.budget.snapshot())]
        if spec.conversation or spec.purpose == "keep_warm":
            events.append(self.cache_state(model))
        events += self._flag_notices(spec.turn, record)
        if cut:
            events.append(
                Notice(
                    f"turn {spec.turn}: the answer was cut at max_tokens "
                    f"({record.max_tokens:,}) in the middle of a call to {', '.join(cut)}; "
                    "that call was dropped (raise max_tokens or the cap to let it finish)",
                    "warning",
                )
            )
        return events

    def _flag_notices(self, turn: int, record: Turn) -> list[Event]:
        out: list[Event] = []
        if record.over_reservation:
            out.append(
                Notice(
                    f"turn {turn}: the server billed more than the call was reserved for "
                    f"(${record.cost_usd:.6f} against ${record.reserved_usd:.6f}); "
                    "later calls reserve for it",
                    "warning",
                )
            )
        if record.model_mismatch:
            out.append(
                Notice(
                    f"turn {turn}: asked for {record.model}, the server answered as "
                    f"{record.model_mismatch} (priced as {record.priced_as})",
                    "warning",
                )
            )
        return out

    def _settle_failure(
        self, spec: CallSpec, p: Prepared, hold: Hold, failure: CallFailed, updates: int
    ) -> list[Event]:
        flags: dict[str, Any] = {}
        if not failure.sent:
            hold.release()
            usage, cost = TokenUsage(), Cost()
            flags["sent"] = False
        elif usage_unknown(failure) and updates == 0:
            usage, cost = TokenUsage(), self._worst_case_cost(p)
            hold.settle(cost.total)
            flags["usage_unknown"] = True
        else:
            usage = failure.partial_usage
            if updates == 1:
                # message_start billed the input; the output the server went on to make
                # is unknown: it stays spent at the most the request allowed.
                output = max(usage.output_tokens, p.reservation.output_tokens)
                usage = dataclasses.replace(usage, output_tokens=output)
                flags["output_unknown"] = True
            usage, cost, _, more = self._billed(p, usage, hold, "")
            flags.update(more)
            hold.settle(cost.total)
        self.ledger.add(usage, cost, counts_as_turn=False)
        wait = None
        if is_retryable(failure) and self.retries_used < self.settings.run.max_retries:
            wait = self.backoff(self.retries_used, failure.retry_after_s)
            self.retries_used += 1
        self._pending_wait = wait
        record = self.write(
            Attempt(
                turn=spec.turn,
                purpose=spec.purpose,
                model=p.model,
                tier=p.decision.tier,
                status=failure.status,
                error_type=failure.error_type,
                error=str(failure),
                request_id=failure.request_id,
                retry_in_s=None if wait is None else round(wait, 3),
                retries_used=self.retries_used,
                usage=usage,
                cost_usd=cost.total,
                reserved_usd=p.reservation.worst_case_usd,
                cumulative_cost_usd=self.ledger.spent,
                **flags,
            )
        )
        return [AttemptFailed(record), BudgetChanged(self.budget.snapshot())]

    def _settle_interrupted(
        self, spec: CallSpec, p: Prepared, hold: Hold, seen: _Seen
    ) -> list[Event]:
        """Stopped (Escape, Ctrl-C, a signal): what streamed stays, and its cost counts; with
        no usage seen, the worst case."""
        text = "".join(seen.text)
        content = [{"type": "text", "text": text}] if text else []
        self.interrupted_content = content
        flags: dict[str, Any] = {}
        if seen.usage_seen:
            output = max(seen.usage.output_tokens, estimate_tokens(text))
            usage = dataclasses.replace(seen.usage, output_tokens=output)
            usage, cost, _, more = self._billed(p, usage, hold, "")
            flags.update(more)
        else:
            usage, cost = TokenUsage(), self._worst_case_cost(p)
            flags["usage_unknown"] = True
        hold.settle(cost.total)
        result = CallResult("", p.model, content, "interrupted", usage, None, None, 0.0)
        self._write_turn(spec, p, result, cost, p.model, flags, None, [])
        return []

    def _write_turn(
        self,
        spec: CallSpec,
        p: Prepared,
        result: CallResult,
        cost: Cost,
        priced_as: str,
        flags: dict[str, Any],
        miss_reason: str | None,
        cut: list[str],
    ) -> Turn:
        """Book a finished (or stopped) call in the ledger and write its `turn` record."""
        usage, res, decision = result.usage, p.reservation, p.decision
        without_cache = self.pricer.without_cache(priced_as, usage)
        self.ledger.add(usage, cost, without_cache=without_cache)
        record = self.last_call = self.write(
            Turn(
                turn=spec.turn,
                purpose=spec.purpose,
                model=p.model,
                tier=decision.tier,
                simulated=self.simulated,
                usage=usage,
                context_tokens=usage.total_input_tokens,
                context_window=context_window(p.model, self.settings.run.context_window),
                cost_usd=cost.total,
                cost_breakdown_usd=cost,
                cumulative_cost_usd=self.ledger.spent,
                max_tokens=p.request["max_tokens"],
                max_tokens_requested=res.requested_max_tokens,
                input_tokens_counted=res.input_tokens,
                input_count_source=res.token_source,
                reserved_usd=res.worst_case_usd,
                stop_reason=result.stop_reason,
                latency_s=round(result.latency_s, 4),
                ttft_s=None if result.ttft_s is None else round(result.ttft_s, 4),
                started_at=self.started_at,
                ended_at=utc_now_iso(),
                request_id=result.request_id,
                message_id=result.message_id,
                route_reason=decision.reason,
                route_candidates=decision.candidates_record(),
                escalated_from_turn=spec.escalated_from,
                cache_miss_reason=miss_reason,
                cost_without_cache_usd=without_cache,
                saved_by_cache_usd=without_cache - cost.total,
                tool_calls=[u["name"] for u in result.tool_uses],
                cut_tool_calls=cut,
                priced_as=priced_as,
                **flags,
            )
        )
        return record

    def cache_state(self, model: str) -> CacheStateChanged:
        state = self.cache.models[model]
        return CacheStateChanged(
            model,
            state.cached_prefix_tokens,
            state.last_write_at,
            state.last_read_at,
            state.expires_at,
        )
