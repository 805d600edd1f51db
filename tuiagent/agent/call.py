"""The agent's face of the one meter (tuiagent/meter): plan -> hold -> send -> stream ->
settle -> record, with retries.

Every model call of the agent goes through `Caller.call` (a `Call`: its events, then its
`CallEnd`; the provider behind it is llm/provider.py's seam): agent turns, summaries, the
classifier, keep-warm, replay, sub-agents. The money invariant: a call is held at its worst
case before it is sent (the meter's plan and hold; a `hold` record is written first), held in
flight while it streams, and in a `finally` settled by the meter's distrust rules and
written to the run log exactly once (a `turn` or an `attempt` record), whatever the server
sends and whatever is raised (cancellation and signals included).

What is the agent's own: the route (a tier that steps down to fit, cache markers dropped
close to the cap), the retries (the proxy cannot retry for its client), the events the UI
shows, what the run spent, the cache tracker; and where an agent's records go in its run,
and who it is on each (`Place`). The main agent opens the run: a new run id, the run log
and the run's transcript. A sub-agent (agent/delegate.py) has a parent: it writes to the
parent's run log with its own identity on every record (`agent`, `parent_agent`,
`parent_turn`, `task`), and keeps its conversation in a transcript of its own. (The
records' types are tuiagent/runs/records.py's.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import getpass
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from tuiagent.agent.events import (
    AnswerDelta,
    AttemptFailed,
    BudgetChanged,
    CacheStateChanged,
    CallHeld,
    Event,
    EventStream,
    Notice,
    Steps,
    ToolCallStarted,
    TurnFinished,
    TurnStarted,
)
from tuiagent.agent.router import RouteDecision
from tuiagent.apikey import api_key
from tuiagent.config import TIERS, Settings
from tuiagent.cost.budget import Budget
from tuiagent.cost.display import budget_line
from tuiagent.cost.display import cap as show_cap
from tuiagent.cost.display import money as show_money
from tuiagent.cost.pricing import Pricer, Spending
from tuiagent.errors import UsageError
from tuiagent.ledger import LedgerError, Scopes, key_id
from tuiagent.ledger.scopes import clean_value
from tuiagent.llm.models import context_window
from tuiagent.llm.provider import (
    CallFailed,
    CallResult,
    Provider,
    TextDelta,
    ToolUseStarted,
    UsageUpdate,
)
from tuiagent.llm.tokens import (
    CacheTracker,
    TokenUsage,
    api_miss_reason,
    count_breakpoints,
    estimate_tokens,
    without_breakpoints,
)
from tuiagent.meter import CallMeter, Held, Plan, Seen, Settled, Size, Unfit, record_fields
from tuiagent.runs.layout import transcript_path
from tuiagent.runs.log import R, RunLog, Transcript, utc_now_iso
from tuiagent.runs.records import Attempt, HaltReason, HoldRecord, Turn


@dataclass(frozen=True)
class Place:
    """An agent's place in its run: its identity, the run's log, its transcript."""

    identity: dict[str, Any]  # on every record the agent writes
    run_id: str
    log: RunLog
    transcript: Transcript

    def own(self, record: R) -> R:
        """The record as this agent's: its run id and identity on it."""
        return dataclasses.replace(record, run_id=self.run_id, **self.identity)

    def write(self, record: R) -> R:
        """Write a record to the run log as this agent's."""
        record = self.own(record)
        self.log.append(record)
        return record

    def write_hold(self, turn: int, purpose: str, held: Held) -> HoldRecord:
        """A call's request in the transcript and its `hold` record, written before it is
        sent; LogWriteError on a full disk (the call releases the hold and sends nothing)."""
        plan = held.plan
        res = plan.reservation
        self.transcript.request(turn, purpose, plan.request)
        record = self.write(
            HoldRecord(
                hold_id=held.hold_id,
                turn=turn,
                purpose=purpose,
                model=plan.model,
                reserved_usd=res.worst_case_usd,
                max_tokens=int(plan.request["max_tokens"]),
                input_tokens_counted=res.input_tokens,
                started_at=utc_now_iso(),
            )
        )
        return record


def run_scopes(run_id: str, session: str, simulated: bool) -> Scopes:
    """What a run's calls are for the budgets: its session, the user at this machine,
    `tuiagent` as the client, a hash of the API key (none offline); simulated offline."""
    try:
        user: str | None = getpass.getuser()
    except (OSError, KeyError):
        user = None
    key = None if simulated else key_id(api_key())
    return Scopes(
        session=session,
        user=clean_value(user),
        client="tuiagent",
        key=key,
        simulated=simulated,
        run=run_id,
    )


def place_of(
    agent_id: str,
    *,
    log_dir: Path,
    run_id: str,
    parent: Place | None = None,
    parent_turn: int = 0,
    task: str | None = None,
) -> Place:
    """The main agent's place (a new run, `run_id`), or a sub-agent's in its parent's run
    (`parent`, at the parent's turn `parent_turn`)."""
    identity: dict[str, Any] = {"agent": agent_id}
    if parent is None:
        log = RunLog(log_dir, run_id)
        return Place(identity, run_id, log, Transcript(transcript_path(log.path)))
    identity.update(parent_agent=parent.identity["agent"], parent_turn=parent_turn, task=task)
    transcript = Transcript(transcript_path(parent.log.path, agent_id))
    return Place(identity, parent.run_id, parent.log, transcript)


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


@dataclass
class Retries:
    """The retries of transient failures a request may make (each request gets its own
    `max_retries`), and how many it made."""

    limit: int
    used: int = 0


def _with_model(request: dict[str, Any], model: str) -> dict[str, Any]:
    return {**request, "model": model}


@dataclass(frozen=True)
class CallEnd:
    """How a call ended (the result of its stream): its result, or why there is none.

    reason: None (completed), max_cost (no useful call fits), max_retries, error (a failure
    not retried), or "skipped" (a helper call that did not fit or failed).
    """

    result: CallResult | None
    reason: HaltReason | Literal["skipped"] | None = None
    detail: str = ""
    tier: str = ""  # the tier the call was made on (after any step-down)
    needed_usd: Decimal | None = None  # "max_cost": what the cheapest useful call needs
    record: Turn | None = None  # the completed call's `turn` record


@dataclass(frozen=True)
class Prepared:
    """A call ready to hold: the route taken and the meter's plan (the exact request)."""

    decision: RouteDecision
    plan: Plan

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


def _over_reservation(turn: int, record: Turn) -> str:
    """The warning for a call billed beyond its reservation: in dollars when the dollars
    went over the hold, else in the tokens that did (the hold still covered the bill)."""
    if record.cost_usd > record.reserved_usd:
        return (
            f"turn {turn}: the server billed more than the call was reserved for "
            f"(${record.cost_usd:.6f} against ${record.reserved_usd:.6f}); "
            "later calls reserve for it"
        )
    u, over = record.usage, []
    if u.total_input_tokens > record.input_tokens_counted:
        over.append(f"{u.total_input_tokens:,} input against {record.input_tokens_counted:,}")
    if u.output_tokens > record.max_tokens:
        over.append(f"{u.output_tokens:,} output against max_tokens {record.max_tokens:,}")
    return (
        f"turn {turn}: the server counted more tokens than the call was reserved for "
        f"({'; '.join(over)}), within the dollars held (${record.cost_usd:.6f} of "
        f"${record.reserved_usd:.6f}); later calls reserve for it"
    )


def usage_unknown(failure: CallFailed) -> bool:
    """The request left and the server may have billed it, but no usage came back: an
    answer that dropped before message_start, a timeout, an unreadable stream. (An HTTP
    error status bills nothing.)"""
    return failure.sent and not failure.usage_seen and failure.status in (None, 200)


@dataclass(frozen=True)
class _Held:
    """A call held by the meter, with the route that chose it."""

    prepared: Prepared
    held: Held
    record: HoldRecord  # its `hold` record, written before it was sent
    started_at: str  # when it was sent (wall clock, ISO-8601)


@dataclass
class _Seen:
    """What an attempt has seen so far."""

    usage: TokenUsage = field(default_factory=TokenUsage)
    usage_seen: bool = False
    updates: int = 0  # usage reports: message_start's, then message_delta's (the final one)
    text: list[str] = field(default_factory=list)
    result: CallResult | None = None
    failure: CallFailed | None = None

    def content(self) -> list[dict[str, Any]]:
        """What streamed, as assistant content (a call stopped before it finished)."""
        text = "".join(self.text)
        return [{"type": "text", "text": text}] if text else []


class Caller:
    """The metered calls of one run (or one sub-agent): its meter (budget, calibration,
    prefix), spending and cache tracker, the provider it calls and the place its records go."""

    def __init__(
        self,
        settings: Settings,
        *,
        provider: Provider,
        pricer: Pricer,
        budget: Budget,
        place: Place,
        spending: Spending,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.provider = provider
        self.pricer = pricer
        self.budget = budget
        # One call at a time under this budget (sub-agents have slices of their own): a
        # call may hold all that is left.
        self.meter = CallMeter(
            pricer,
            budget,
            min_useful_tokens=settings.run.min_useful_tokens,
            wait_s=settings.run.hold_wait_s,
            clock=clock,
        )
        self.meter.sleep = sleep  # retries and waits for holds: one clock to replace
        self.spending = spending
        self.place = place
        self.clock = clock
        self.wall_clock = wall_clock
        self.random = random.Random()
        self.cache = CacheTracker()
        self.last_call: Turn | None = None  # the last `turn` record written

    # --- the call ------------------------------------------------------------

    def call(self, spec: CallSpec, retries: Retries) -> Call:
        """The call's events, then its CallEnd (agent/events.py). Its retries count against
        `retries`: the request's (each request gets `max_retries` of its own)."""
        return Call(self, spec, retries)

    def helper(
        self, purpose: str, request: dict[str, Any], turn: int, retries: Retries, reason: str = ""
    ) -> Call:
        """One helper call (summarize, classify, compact, keep_warm) on its model's tier,
        reserved, retried and logged like every call (its own `turn` record with its
        `purpose`). Its CallEnd says "skipped" when it did not fit or failed."""
        model = request["model"]
        tier = self.settings.router.tier_of(model) or "fast"
        why = reason or f"{purpose}: helper call on the {tier} tier"
        build = functools.partial(_with_model, request)
        return self.call(CallSpec(turn, purpose, RouteDecision(tier, model, why), build), retries)

    async def _attempts(self, call: Call, spec: CallSpec, retries: Retries) -> Steps:
        """A call's steps: its events, its CallEnd set on `call`. Transient failures are
        retried within the request's `retries`; a helper call that does not fit or fails is
        skipped (reason "skipped"), an agent call ends with why."""
        helper = spec.purpose != "agent"
        attempt = 0
        while True:
            attempt += 1
            try:
                held = await self._hold(spec)
                end = self._did_not_fit(spec, helper, held) if isinstance(held, Unfit) else None
            except (CallFailed, UsageError, LedgerError) as failure:
                # count_tokens refused (a bad key), a model or a modifier without a price, a
                # ledger that cannot be reached (then nothing is sent)
                yield Notice(str(failure), "warning" if helper else "error")
                call.set_result(
                    CallEnd(None, "skipped" if helper else HaltReason.ERROR, str(failure))
                )
                return
            if isinstance(held, Unfit):
                assert end is not None
                if helper:  # said as a notice; a skipped call's end carries no detail
                    yield Notice(end.detail)
                    end = CallEnd(None, "skipped")
                call.set_result(end)
                return
            p, request = held.prepared, held.held.request
            yield CallHeld(held.record)
            yield BudgetChanged(self.budget.snapshot())
            yield TurnStarted(
                spec.turn,
                p.decision.tier,
                p.model,
                request["max_tokens"],
                p.decision.reason,
                p.decision.candidates_record(),
                attempt,
            )
            seen = _Seen()
            events: list[Event] = []
            wait: float | None = None
            stream = self.provider.stream(
                request,
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
                events, wait = self._account(spec, held, seen, retries)
                if seen.result is None and seen.failure is None:
                    call.streamed = seen.content()
                else:
                    call.recorded = True
                await stream.aclose()
            for event in events:
                yield event
            if seen.result is not None:
                call.set_result(CallEnd(seen.result, tier=p.decision.tier, record=self.last_call))
                return
            failed = seen.failure
            assert failed is not None
            if not is_retryable(failed):
                yield Notice(str(failed), "warning" if helper else "error")
                call.set_result(
                    CallEnd(None, "skipped" if helper else HaltReason.ERROR, str(failed))
                )
                return
            if wait is None:  # the accounting's: the retries are used up
                detail = (
                    f"{failed}; this request's {retries.limit} retries are used up "
                    "(each message gets its own: send it again to retry)"
                )
                yield Notice(detail, "warning")
                call.set_result(
                    CallEnd(None, "skipped" if helper else HaltReason.MAX_RETRIES, detail)
                )
                return
            yield Notice(f"{failed}; retry {retries.used} in {wait:.1f}s", "warning")
            await self.meter.sleep(wait)

    def _did_not_fit(self, spec: CallSpec, helper: bool, unfit: Unfit) -> CallEnd:
        """Why no useful call fits: the run's cap, or the `[[budgets]]` budget that stops it
        (named, with when it resets). LedgerError when the ledger cannot be read."""
        scopes = Scopes(model=spec.decision.model)
        left = self.budget.remaining_for(scopes)
        if helper:
            why = f"skipped the {spec.purpose} call: it did not fit the {show_money(left)} left"
            return CallEnd(None, "skipped", why)
        needed = unfit.needed
        places = 4  # enough places that what is left and what is needed differ
        while places < 9 and round(left, places) >= round(needed, places):
            places += 1
        line = self.budget.binding(scopes)
        if line is not None and self.budget.stack is not None:
            now = self.budget.stack.ledger.clock()
            why = (
                f"{budget_line(line, now)}: the next call needs up to {show_money(needed, places)}"
            )
        else:
            why = (
                f"spent {show_money(self.budget.settled, places)} of the "
                f"{show_cap(self.budget.cap)} cap: {show_money(left, places)} left, "
                f"the next call needs up to {show_money(needed, places)}"
            )
        return CallEnd(None, HaltReason.MAX_COST, why, needed_usd=needed)

    def backoff(self, retries_so_far: int, retry_after_s: float | None) -> float:
        """Exponential backoff with jitter; the server's retry-after wins when it says."""
        if retry_after_s is not None and retry_after_s >= 0:
            return min(retry_after_s, self.settings.run.retry_max_wait_s)
        base = min(RETRY_INITIAL_S * 2.0**retries_so_far, RETRY_MAX_S)
        return float(base / 2 + self.random.uniform(0, base / 2))

    # --- before: route, plan, hold -------------------------------------------

    def _tiers(self, spec: CallSpec) -> list[str]:
        tiers = [spec.decision.tier]
        if spec.step_down and spec.decision.tier in TIERS:
            tiers += list(reversed(TIERS[: TIERS.index(spec.decision.tier)]))
        return tiers

    async def _hold(self, spec: CallSpec) -> _Held | Unfit:
        """Plan the call and hold its worst case, its request and `hold` record written before
        it is sent; Unfit when no useful call fits (not even once holds in flight settle)."""
        label = f"turn {spec.turn} {spec.purpose}"
        wait = self.meter.waiting(Scopes(model=spec.decision.model))
        while True:
            wait.next_round()
            prepared = await self._prepare(spec)
            if prepared is not None:
                held = await self.meter.hold_async(prepared.plan, label, wait.waited_s)
                if held is not None:
                    with held.released_on_error():  # nothing is sent unrecorded
                        record = self.place.write_hold(spec.turn, spec.purpose, held)
                    return _Held(prepared, held, record, utc_now_iso())
            elif (unfit := await wait.unfit()) is not None:
                return unfit

    async def _prepare(self, spec: CallSpec) -> Prepared | None:
        """The plan for this call within what is left of the cap.

        When even a useful minimum of output does not fit, an auto-routed call steps down
        to a cheaper tier; close to the cap a call drops its cache markers (then nothing is
        held at the write premium); otherwise None: nothing is sent.
        """
        decision = spec.decision
        for tier in self._tiers(spec):
            model = (
                decision.model if tier == decision.tier else self.settings.router.model_for(tier)
            )
            request = spec.build(model)
            plan = await self._plan(model, request, spec.conversation)
            if plan is None and count_breakpoints(request):
                plan = await self._plan(model, without_breakpoints(request), spec.conversation)
            if plan is None:
                continue
            if tier != decision.tier:
                why = f"{decision.reason}; stepped down from {decision.tier}: a useful answer did not fit the cap"
                decision = dataclasses.replace(decision, tier=tier, model=model, reason=why)
            return Prepared(decision, plan)
        return None

    async def quote(self, model: str, request: dict[str, Any]) -> tuple[Size, Plan | None]:
        """The request's input counted (count_tokens is free; the offline model counts
        locally; the meter's own sizing where no count can be had) and the hold it would get
        now (None: it would not fit). Nothing is sent, held or recorded."""
        modifiers = self.meter.modifiers(model, request)
        counted = await self.provider.count_tokens(request) if self.provider.counts_tokens else None
        if isinstance(counted, int) and not isinstance(counted, bool) and counted >= 0:
            size = Size(counted, "count_tokens")
        else:
            size = await self.meter.size(model, request, modifiers, None)
        needed = self.meter.needed  # (what a halt says it needed: not this quote's)
        plan = self.meter.plan(model, request, size, modifiers, Scopes(model=model))
        self.meter.needed = needed
        return size, plan

    async def _plan(self, model: str, request: dict[str, Any], conversation: bool) -> Plan | None:
        modifiers = self.meter.modifiers(model, request)
        count = self.provider.count_tokens if self.provider.counts_tokens else None
        scopes = Scopes(model=model)  # (the run's own scopes are the budget's)
        size = await self.meter.size(
            model, request, modifiers, count, conversation=conversation, scopes=scopes
        )
        return self.meter.plan(model, request, size, modifiers, scopes)

    # --- after: settle and record, exactly once -----------------------------

    def _account(
        self, spec: CallSpec, held: _Held, seen: _Seen, retries: Retries
    ) -> tuple[list[Event], float | None]:
        """Settle the hold and write the attempt's one record. Runs in a `finally`: with a
        result, with a failure, or with neither (cancelled, a signal, the consumer gone).
        Returns the events to show, and after a failure the wait before its retry (None:
        no retry)."""
        if seen.result is not None:
            return self._settle_turn(spec, held, seen.result, seen.updates), None
        if seen.failure is not None:
            return self._settle_failure(spec, held, seen.failure, seen.updates, retries)
        return self._settle_interrupted(spec, held, seen), None

    def _settle_turn(
        self, spec: CallSpec, held: _Held, result: CallResult, updates: int
    ) -> list[Event]:
        response_model = result.response_model or result.model
        settled = self.meter.settle(
            held.held,
            Seen(
                usage=result.usage,
                updates=updates,
                completed=True,
                response_model=response_model,
            ),
        )
        usage = settled.usage
        result = dataclasses.replace(result, usage=usage)
        p, request = held.prepared, held.held.request
        miss_reason = None
        model = p.model
        if spec.conversation:  # a helper call's prefix is not the conversation's
            now = self.wall_clock()
            miss_reason = self.cache.miss_reason(
                model,
                usage,
                now,
                request,
                api_miss_reason(result.diagnostics),
                self.settings.cache.enabled,
            )
            self.cache.note(model, usage, self.settings.cache.ttl, now, result.message_id or None)
            self.meter.note_prefix(held.held, settled)
        elif spec.purpose == "keep_warm":
            self.cache.note(model, usage, self.settings.cache.ttl, self.wall_clock(), None)
        cut = list(result.cut_tool_calls)
        record = self._write_turn(spec, held, result, settled, miss_reason, cut)
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
            out.append(Notice(_over_reservation(turn, record), "warning"))
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
        self, spec: CallSpec, held: _Held, failure: CallFailed, updates: int, retries: Retries
    ) -> tuple[list[Event], float | None]:
        seen_usage = failure.usage_seen or updates > 0
        settled = self.meter.settle(
            held.held,
            Seen(
                sent=failure.sent,
                status=failure.status,
                usage=failure.partial_usage if seen_usage else None,
                updates=updates,
                bad_usage=failure.error_type == "bad_usage",
            ),
        )
        self.spending.add(settled.usage, settled.cost, counts_as_turn=False)
        wait = None
        if is_retryable(failure) and retries.used < retries.limit:
            wait = self.backoff(retries.used, failure.retry_after_s)
            retries.used += 1
        p = held.prepared
        record = self.place.write(
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
                retries_used=retries.used,
                usage=settled.usage,
                cost_usd=settled.cost.total,
                reserved_usd=held.held.reservation.worst_case_usd,
                cumulative_cost_usd=self.spending.spent,
                **record_fields(held.held, settled),
            )
        )
        return [AttemptFailed(record), BudgetChanged(self.budget.snapshot())], wait

    def _settle_interrupted(self, spec: CallSpec, held: _Held, seen: _Seen) -> list[Event]:
        """Stopped (Escape, Ctrl-C, a signal): what streamed stays; the call is priced by
        what its usage said (output unknown after the cut: the most it allowed), or with
        no usage seen at its worst case."""
        content = seen.content()
        settled = self.meter.settle(
            held.held,
            Seen(
                usage=seen.usage if seen.usage_seen else None,
                updates=seen.updates,
                output_streamed=estimate_tokens("".join(seen.text)),
            ),
        )
        usage = settled.usage
        result = CallResult("", held.prepared.model, content, "interrupted", usage, None, None, 0.0)
        self._write_turn(spec, held, result, settled, None, [])
        return []

    def _write_turn(
        self,
        spec: CallSpec,
        held: _Held,
        result: CallResult,
        settled: Settled,
        miss_reason: str | None,
        cut: list[str],
    ) -> Turn:
        """Book a finished (or stopped) call in the run's spending and write its `turn` record."""
        p, cost = held.prepared, settled.cost
        usage, res, decision = result.usage, held.held.reservation, p.decision
        without_cache = self.pricer.without_cache(settled.priced_as, usage, settled.modifiers)
        self.spending.add(usage, cost, without_cache=without_cache)
        record = self.last_call = self.place.write(
            Turn(
                turn=spec.turn,
                purpose=spec.purpose,
                model=p.model,
                tier=decision.tier,
                simulated=self.provider.simulated,
                usage=usage,
                context_tokens=usage.total_input_tokens,
                context_window=context_window(p.model, self.settings.run.context_window),
                cost_usd=cost.total,
                cost_breakdown_usd=cost,
                cumulative_cost_usd=self.spending.spent,
                max_tokens=held.held.request["max_tokens"],
                max_tokens_requested=res.requested_max_tokens,
                input_tokens_counted=res.input_tokens,
                input_count_source=res.token_source,
                reserved_usd=res.worst_case_usd,
                stop_reason=result.stop_reason,
                latency_s=round(result.latency_s, 4),
                ttft_s=None if result.ttft_s is None else round(result.ttft_s, 4),
                started_at=held.started_at,
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
                **record_fields(held.held, settled),
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


class Call(EventStream[CallEnd]):
    """One metered call: its events (held, started, the answer as it streams, finished or
    failed, retries), then its CallEnd."""

    def __init__(self, caller: Caller, spec: CallSpec, retries: Retries) -> None:
        super().__init__()
        self.caller, self.spec, self.retries = caller, spec, retries
        # What streamed of the call when it was stopped (Escape, Ctrl-C, a signal): the
        # loop keeps it in the conversation.
        self.streamed: list[dict[str, Any]] = []
        # An attempt finished or failed and has its record (its turn number is taken).
        self.recorded = False

    def steps(self) -> Steps:
        return self.caller._attempts(self, self.spec, self.retries)
