"""The proxy's face of the one meter (tuiagent/meter): hold a client's request before it is
sent, settle what its response says it billed, write one run-log record per call.

Nothing here does HTTP: the server hands in the request, a way to count its tokens, and
what came back (a `UsageScanner`). The rules are the meter's, the agent's own; what is the
proxy's is named there: it shares what is left between the clients it serves at once
(`FAIR_SHARE`), and it cannot retry for its client, so each request is one record.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from typing import Any

from tuiagent.config import Settings
from tuiagent.cost.budget import Bounds, Budget, Hold, Reservation, server_loop_note
from tuiagent.cost.display import budget_line
from tuiagent.cost.pricing import Pricer
from tuiagent.errors import UsageError
from tuiagent.ledger import LedgerError, Scopes
from tuiagent.llm.tokens import COUNTED_FIELDS, count_breakpoints, plan_breakpoints
from tuiagent.meter import CallMeter, Held, Seen, Unfit, record_fields
from tuiagent.proxy.causes import MissCauses, session_key
from tuiagent.proxy.ratelimits import RateLimits
from tuiagent.proxy.sse import UsageScanner
from tuiagent.redact import redact
from tuiagent.runs.layout import transcript_path
from tuiagent.runs.log import R, RunLog, Transcript, utc_now_iso
from tuiagent.runs.records import (
    HoldRecord,
    Limits,
    ProxyAttempt,
    ProxyRunEnd,
    ProxyRunStart,
    ProxyTurn,
    Record,
    RefusedCall,
)

# Asks the upstream's count_tokens: the answer's `input_tokens` as sent (the meter checks
# it), or None when there is none.
Counter = Callable[[dict[str, Any]], Awaitable[object]]
Listener = Callable[[Record], None]

PURPOSE = "proxy"  # a proxied call's purpose: the transcript keeps its request whole
# A request that asks for more than this share of what is left holds the share (never
# less than the useful minimum), with its max_tokens lowered to it: clients that ask for
# everything (the leading coding agent asks 128,000 tokens a call) run side by side.
FAIR_SHARE = Decimal("0.5")
CONVERSATIONS = 256  # the conversations whose last call is remembered, to size the next


@dataclass
class Admitted:
    """A request held within the cap, ready to send as `body`."""

    turn: int
    model: str
    client: str
    streamed: bool
    request: dict[str, Any]  # as sent
    body: bytes | bytearray
    held: Held
    auto_cached: bool
    started: float

    @property
    def reservation(self) -> Reservation:
        return self.held.reservation

    @property
    def hold(self) -> Hold:
        return self.held.hold


@dataclass(frozen=True)
class NotAdmitted:
    """A request that is not sent: the Anthropic-shaped 400 the client gets instead."""

    message: str

    def body(self) -> dict[str, Any]:
        return {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": self.message},
        }


class Meter:
    def __init__(
        self,
        budget: Budget,
        pricer: Pricer,
        log: RunLog,
        run_id: str,
        *,
        auto_cache: bool = False,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.monotonic,
        transcript: Transcript | None = None,
    ) -> None:
        run = (settings or Settings()).run
        self.budget = budget
        self.pricer = pricer
        self.core = CallMeter(
            pricer,
            budget,
            min_useful_tokens=run.min_useful_tokens,
            fair_share=FAIR_SHARE,
            wait_s=run.hold_wait_s,
            conversations=CONVERSATIONS,
            clock=clock,
        )
        self.log = log
        self.run_id = run_id
        self.auto_cache = auto_cache
        self.clock = clock
        self.simulated = False  # the upstream is the offline model (set by `start`)
        self.listeners: list[Listener] = []
        # Each request whole (calls of many conversations interleave), so that `report`
        # splits a call's input by source and `replay` resends it.
        self.transcript = transcript or Transcript(transcript_path(log.path))
        self.calls = 0  # Messages requests taken in: each gets one record, numbered by this
        self.causes = MissCauses(clock)  # each session's last call, to name a cache miss
        self.rate_limits = RateLimits()  # each key's, as the upstream's answers say them

    # --- before sending ----------------------------------------------------------

    async def admit(
        self,
        raw: bytes | bytearray,
        request: dict[str, Any],
        client: str,
        count: Counter,
        scopes: Scopes | None = None,
        betas: tuple[str, ...] = (),
    ) -> Admitted | NotAdmitted:
        """Hold the request's worst case (or its fair share of what is left, its max_tokens
        lowered to it), its `hold` record written; or refuse it. `scopes` (its session,
        agent, key, model) choose the `[[budgets]]` it falls under; `betas` (its
        `anthropic-beta` header) how far it may reach (`Bounds`)."""
        started = self.clock()
        self.calls += 1
        turn = self.calls
        model = str(request.get("model", ""))
        try:
            modifiers = self.core.modifiers(model, request)
        except UsageError as exc:
            return self._refuse(
                turn, client, model, f"tuiagent proxy: cannot cap this request: {exc}", scopes
            )
        bounds = Bounds.of(model, betas)
        auto_cached = False
        if self.auto_cache and not count_breakpoints(request):
            request = plan_breakpoints(request, model)
            auto_cached = count_breakpoints(request) > 0

        async def counted(body: dict[str, Any]) -> object:
            return await count({k: v for k, v in body.items() if k in COUNTED_FIELDS})

        try:
            outcome = await self.core.reserve(
                model,
                request,
                counted,
                label=f"proxy #{turn}",
                modifiers=modifiers,
                scopes=scopes or Scopes(client=client, model=model),
                bounds=bounds,
            )
        except (TypeError, AttributeError, ValueError):  # a shape the estimate cannot read
            message = "tuiagent proxy: cannot count this request's tokens to cap it"
            return self._refuse(turn, client, model, message, scopes)
        except LedgerError as exc:  # fail closed: nothing is sent
            return self._refuse(
                turn, client, model, f"tuiagent proxy: refused before sending: {exc}", scopes
            )
        if isinstance(outcome, Unfit):
            return self._refuse(
                turn, client, model, self._cap_message(model, outcome, request, bounds), scopes
            )
        with outcome.released_on_error():  # nothing is sent unrecorded
            self.write_hold(turn, client, outcome)
        sent = outcome.request
        changed = auto_cached or outcome.plan.lowered is not None
        body = json.dumps(sent, separators=(",", ":")).encode() if changed else raw
        return Admitted(
            turn,
            model,
            client,
            bool(sent.get("stream")),
            sent,
            body,
            outcome,
            auto_cached,
            started,
        )

    def write_hold(self, turn: int, client: str, held: Held, purpose: str = PURPOSE) -> None:
        """The `hold` record of a call held, before it is sent (a batch's requests too)."""
        res = held.reservation
        self._write(
            HoldRecord(
                hold_id=held.hold_id,
                turn=turn,
                purpose=purpose,
                model=held.plan.model,
                reserved_usd=res.worst_case_usd,
                max_tokens=int(held.request["max_tokens"]),
                input_tokens_counted=res.input_tokens,
                started_at=utc_now_iso(),
                source="proxy",
                client=client,
            )
        )

    def refuse(
        self,
        client: str,
        model: str,
        message: str,
        scopes: Scopes | None = None,
        turn: int | None = None,
    ) -> NotAdmitted:
        """A request refused before it could be admitted (a path or body the proxy cannot
        meter): one `refused` record, numbered as a call (`turn`: the number it was taken in
        with already, else the next)."""
        if turn is None:
            self.calls += 1
            turn = self.calls
        return self._refuse(turn, client, model, message, scopes)

    def _cap_message(
        self, model: str, unfit: Unfit, request: dict[str, Any], bounds: Bounds
    ) -> str:
        b = self.budget.snapshot()
        useful = min(self.core.min_useful_tokens, int(request.get("max_tokens") or 1))
        waited = (
            f" (after waiting {unfit.waited_s:.1f}s for calls in flight)" if unfit.waited_s else ""
        )
        stack = self.budget.stack
        window = (
            " (its document only the API can size, by its pages: held as its window)"
            if unfit.size.source == "window"
            else ""
        )
        need = (
            f"tuiagent proxy: refused before sending: {unfit.size.tokens:,} input tokens"
            f"{window} plus {useful} output tokens of {model} at worst"
            f"{server_loop_note(model, request, bounds)}"
        )
        if unfit.binding is not None and stack is not None:
            return f"{need} do not fit {budget_line(unfit.binding, stack.ledger.clock())}{waited}"
        return (
            f"{need} do not fit the cap "
            f"{_cap(b.cap)}, spent ${b.settled:.4f}, ${b.in_flight:.4f} in flight, "
            f"${b.remaining:.4f} left{waited}; raise it with F3 or --max-cost"
        )

    def _refuse(
        self, turn: int, client: str, model: str, message: str, scopes: Scopes | None = None
    ) -> NotAdmitted:
        s = scopes or Scopes()
        self._write(
            RefusedCall(
                turn=turn,
                client=client,
                model=model,
                error=message,
                session=s.session,
                agent_id=s.agent,
                parent_agent_id=s.parent_agent,
            )
        )
        return NotAdmitted(message)

    # --- after the response ------------------------------------------------------

    def _keep(self, call: Admitted, scanner: UsageScanner) -> None:
        self.transcript.request(call.turn, PURPOSE, call.request, scanner.answer())

    def settle(
        self,
        call: Admitted,
        *,
        status: int | None,
        scanner: UsageScanner,
        request_id: str | None = None,
        ttft_s: float | None = None,
        transport_error: str | None = None,
        sent: bool = True,
        later: list[Callable[[], None]] | None = None,
    ) -> ProxyTurn:
        """Settle the call's hold with what it billed and write its record.

        `status` is the upstream's HTTP status, None when no response came; `sent` False
        when the request never reached the upstream (nothing billed). With `later`, the
        transcript's copy of the request and answer (a long answer takes a while to build
        and write) is left there for the caller to write once the client has its last
        byte; the money is settled and recorded now either way."""
        scanner.finish()
        completed = scanner.completed and scanner.error is None
        settled = self.core.settle(
            call.held,
            Seen(
                sent=sent,
                status=status,
                usage=scanner.usage,
                updates=scanner.updates,
                completed=completed,
                bad_usage=scanner.bad_usage is not None,
                response_model=scanner.model,
                output_streamed=0 if completed else scanner.output_streamed(),
            ),
        )
        usage, cost = settled.usage, settled.cost
        ok = sent and status is not None and status < 400 and completed
        ok = ok and scanner.bad_usage is None and not settled.usage_unknown
        scopes = call.held.plan.scopes or Scopes()
        miss = scanner.miss_reason
        if ok:
            keep = functools.partial(self._keep, call, scanner)
            if later is None:
                keep()
            else:
                later.append(keep)
            self.core.note_prefix(call.held, settled)
            key = session_key(scopes.session, scopes.agent, call.request)
            ours = self.causes.cause(key, call.request, usage)  # remembered either way
            miss = miss or ours  # the API's own diagnosis, where it sends one, wins
        kind = ProxyTurn if ok else ProxyAttempt
        record = kind(
            turn=call.turn,
            purpose=PURPOSE,
            client=call.client,
            model=call.model,
            stream=call.streamed,
            usage=usage,
            cost_usd=cost.total,
            cost_breakdown_usd=None if settled.usage_unknown else cost,
            cumulative_cost_usd=self.budget.settled,
            cap_usd=self.budget.cap,
            max_tokens=int(call.request["max_tokens"]),
            max_tokens_requested=call.reservation.requested_max_tokens,
            input_tokens_counted=call.reservation.input_tokens,
            input_count_source=call.reservation.token_source,
            reserved_usd=call.reservation.worst_case_usd,
            auto_cache=call.auto_cached,
            status=status,
            stop_reason=scanner.stop_reason,
            latency_s=round(self.clock() - call.started, 4),
            ttft_s=None if ttft_s is None else round(ttft_s, 4),
            ended_at=utc_now_iso(),
            request_id=request_id,
            message_id=scanner.message_id or None,
            cache_miss_reason=miss,
            session=scopes.session,
            agent_id=scopes.agent,
            parent_agent_id=scopes.parent_agent,
            **record_fields(call.held, settled),
        )
        if ok:
            without_cache = self.pricer.without_cache(settled.priced_as, usage, settled.modifiers)
            record = replace(
                record,
                cost_without_cache_usd=without_cache,
                saved_by_cache_usd=without_cache - cost.total,
            )
        else:
            record = replace(
                record,
                error_type=_error_type(status, scanner, transport_error, sent),
                error=_error_text(status, scanner, transport_error),
            )
        return self._write(record)

    def write(self, record: R) -> R:
        """Write a record as this run's (a batch's records, `batches`), as `_write`."""
        return self._write(record)

    def _write(self, record: R) -> R:
        """Write a record as this run's, and tell the listeners (the screen, OpenTelemetry):
        its text redacted first, since an upstream's error may quote a client's credential."""
        record = replace(record, run_id=self.run_id)
        if clean := _redacted_text(record):
            record = replace(record, **clean)  # type: ignore[arg-type]
        self.log.append(record)
        for listener in list(self.listeners):
            listener(record)
        return record

    # --- the run's first and last records ------------------------------------------

    def start(self, upstream: str, *, simulated: bool = False) -> None:
        """The run's first record."""
        self.simulated = simulated
        self._write(
            ProxyRunStart(
                started_at=utc_now_iso(),
                provider="anthropic",
                upstream=upstream,
                simulated=simulated,
                auto_cache=self.auto_cache,
                limits=Limits(self.budget.cap),
            )
        )

    def finish(self) -> None:
        b = self.budget.snapshot()
        self._write(
            ProxyRunEnd(ended_at=utc_now_iso(), total_cost_usd=b.settled, in_flight_usd=b.in_flight)
        )
        self.log.close()
        self.transcript.close()


def _redacted_text(record: Record) -> dict[str, str]:
    """The record's text fields that hold a secret, redacted."""
    changed = {}
    for f in fields(record):
        value = getattr(record, f.name)
        if isinstance(value, str) and (clean := redact(value)) != value:
            changed[f.name] = clean
    return changed


def _cap(amount: Decimal) -> str:
    """A cap as it was set: `$5.00`, `$0.105`."""
    whole, _, frac = f"{amount:.6f}".rstrip("0").partition(".")
    return f"${whole}.{frac.ljust(2, '0')}"


def _error_type(
    status: int | None, scanner: UsageScanner, transport_error: str | None, sent: bool
) -> str:
    if scanner.error is not None:
        return str(scanner.error.get("type") or "api_error")
    if scanner.bad_usage is not None:
        return "bad_usage"
    if scanner.unreadable is not None and transport_error is None:
        return "unreadable_answer"
    if not sent or transport_error is not None:
        return "connection_error"
    if status is not None and status >= 400:
        return f"http_{status}"
    return "connection_error"  # 200 and the stream ended before message_stop


def _error_text(status: int | None, scanner: UsageScanner, transport_error: str | None) -> str:
    if scanner.error is not None:
        where = "mid-stream" if status == 200 else str(status)
        return f"API error {where}: {scanner.error.get('message', '')}".strip()
    if transport_error is not None:
        return transport_error
    if status is not None and status >= 400:
        return f"API error {status}"
    if scanner.bad_usage is not None:
        return f"the response's {scanner.bad_usage}: its output is not known, the most it allowed is kept"
    if scanner.unreadable is not None:
        return f"{scanner.unreadable}: what it billed is not known, the most it could is kept"
    return "the response ended before it was complete (connection dropped)"
