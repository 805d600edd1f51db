"""The proxy's cap and its records: reserve a request's worst case before it is sent,
settle what its response says it billed, write one run-log record per call.

Nothing here does HTTP: the server hands in the request, a way to count its tokens, and
what came back. Every request that may have been billed is settled once: with its usage,
or with its worst case when no usage was seen (`usage_unknown`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from typing import Any

from tuiagent.cost.budget import Budget, Hold, Reservation, estimated_with_margin
from tuiagent.cost.pricing import Pricer
from tuiagent.errors import UsageError
from tuiagent.llm.caching import count_breakpoints, plan_breakpoints
from tuiagent.llm.tokens import COUNTED_FIELDS, estimate_request_tokens
from tuiagent.llm.usage import TokenUsage
from tuiagent.proxy.cap import MIN_USEFUL_TOKENS, fit_request
from tuiagent.proxy.sse import UsageScanner
from tuiagent.redact import redact
from tuiagent.runs.layout import transcript_path
from tuiagent.runs.log import R, RunLog, utc_now_iso
from tuiagent.runs.records import (
    Limits,
    ProxyAttempt,
    ProxyRunEnd,
    ProxyRunStart,
    ProxyTurn,
    Record,
)
from tuiagent.runs.records import Refused as RefusedRecord
from tuiagent.runs.transcript import Transcript

Counter = Callable[[dict[str, Any]], Awaitable[int | None]]
Listener = Callable[[Record], None]

THINKING_MIN_BUDGET = 1024  # the API's smallest thinking budget
PURPOSE = "proxy"  # a proxied call's purpose: the transcript keeps its request whole


@dataclass
class Admitted:
    """A request reserved within the cap, ready to send as `body`."""

    turn: int
    model: str
    client: str
    streamed: bool
    request: dict[str, Any]  # as sent
    body: bytes | bytearray
    reservation: Reservation
    hold: Hold
    auto_cached: bool
    started: float


@dataclass(frozen=True)
class Refused:
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
        clock: Callable[[], float] = time.monotonic,
        transcript: Transcript | None = None,
    ) -> None:
        self.budget = budget
        self.pricer = pricer
        self.log = log
        self.run_id = run_id
        self.auto_cache = auto_cache
        self.clock = clock
        self.listeners: list[Listener] = []
        # Each request whole (calls of many conversations interleave), so that `report`
        # splits a call's input by source and `replay` resends it.
        self.transcript = transcript or Transcript(transcript_path(log.path))
        self.calls = 0  # Messages requests taken in: each gets one record, numbered by this

    # --- before sending ----------------------------------------------------------

    async def admit(
        self, raw: bytes | bytearray, request: dict[str, Any], client: str, count: Counter
    ) -> Admitted | Refused:
        """Reserve the request's worst case, lowering its max_tokens to fit; or refuse it."""
        started = self.clock()
        self.calls += 1
        turn = self.calls
        model = str(request.get("model", ""))
        try:
            self.pricer.ensure_priced(model)
        except UsageError as exc:
            return self._refuse(
                turn, client, model, f"tuiagent proxy: cannot cap this request: {exc}"
            )
        changed = False
        auto_cached = False
        if self.auto_cache and not count_breakpoints(request):
            request = plan_breakpoints(request, model)
            auto_cached = changed = count_breakpoints(request) > 0
        counted = await count({k: v for k, v in request.items() if k in COUNTED_FIELDS})
        if counted is not None:
            tokens, source = counted, "count_tokens"
        else:
            try:
                tokens = estimated_with_margin(estimate_request_tokens(request))
            except (TypeError, AttributeError, ValueError):  # a shape the estimate cannot read
                message = "tuiagent proxy: cannot count this request's tokens to cap it"
                return self._refuse(turn, client, model, message)
            source = "estimate"
        while True:
            # Another request may take what is left between fitting and holding: fit again.
            reservation = fit_request(
                self.pricer, model, request, tokens, source, self.budget.remaining
            )
            if reservation is None:
                return self._refuse(turn, client, model, self._cap_message(model, tokens, request))
            hold = self.budget.reserve(reservation.worst_case_usd, f"proxy #{turn}")
            if hold is not None:
                break
        if reservation.max_tokens != reservation.requested_max_tokens:
            request = {**request, "max_tokens": reservation.max_tokens}
            changed = True
            thinking = request.get("thinking")
            if isinstance(thinking, dict) and int(thinking.get("budget_tokens") or 0) >= (
                reservation.max_tokens
            ):
                budget_tokens = reservation.max_tokens - 1
                if budget_tokens < THINKING_MIN_BUDGET:
                    hold.release()
                    return self._refuse(
                        turn, client, model, self._cap_message(model, tokens, request)
                    )
                request["thinking"] = {**thinking, "budget_tokens": budget_tokens}
        body = json.dumps(request, separators=(",", ":")).encode() if changed else raw
        return Admitted(
            turn,
            model,
            client,
            bool(request.get("stream")),
            request,
            body,
            reservation,
            hold,
            auto_cached,
            started,
        )

    def refuse(self, client: str, model: str, message: str) -> Refused:
        """A request refused before it could be admitted (a path or body the proxy cannot
        meter): one `refused` record, numbered as a call."""
        self.calls += 1
        return self._refuse(self.calls, client, model, message)

    def _cap_message(self, model: str, tokens: int, request: dict[str, Any]) -> str:
        b = self.budget.snapshot()
        useful = min(MIN_USEFUL_TOKENS, int(request.get("max_tokens") or MIN_USEFUL_TOKENS))
        return (
            f"tuiagent proxy: refused before sending: {tokens:,} input tokens plus "
            f"{useful} output tokens of {model} at worst do not fit the cap "
            f"{_cap(b.cap)}, spent ${b.settled:.4f}, ${b.in_flight:.4f} in flight, "
            f"${b.remaining:.4f} left; raise it with F3 or --max-cost"
        )

    def _refuse(self, turn: int, client: str, model: str, message: str) -> Refused:
        self._write(RefusedRecord(turn=turn, client=client, model=model, error=message))
        return Refused(message)

    # --- after the response ------------------------------------------------------

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
    ) -> ProxyTurn:
        """Settle the call's hold with what it billed and write its record.

        `status` is the upstream's HTTP status, None when no response came; `sent` False
        when the request never reached the upstream (nothing billed)."""
        scanner.finish()
        usage = scanner.known_usage
        unknown = False
        if not sent or (status is not None and status >= 400):
            usage = TokenUsage()  # an error answer bills nothing
        elif usage is not None and not scanner.completed:
            # Cut or failed mid-stream: what message_start said, and the output that came.
            output = max(usage.output_tokens, scanner.output_streamed())
            usage = TokenUsage(**{**usage.as_record(), "output_tokens": output})
        if usage is None:
            unknown = True
            cost = call.reservation.worst_case_usd
            breakdown = None
            call.hold.settle(cost)
            usage = TokenUsage()
        else:
            priced = self.pricer.price(call.model, usage)
            cost, breakdown = priced.total, priced
            if cost or usage != TokenUsage():
                call.hold.settle(cost)
            else:
                call.hold.release()
        ok = sent and status is not None and status < 400 and scanner.completed
        ok = ok and scanner.error is None and not unknown
        if ok:
            self.transcript.request(call.turn, PURPOSE, call.request)
        kind = ProxyTurn if ok else ProxyAttempt
        record = kind(
            turn=call.turn,
            purpose=PURPOSE,
            client=call.client,
            model=call.model,
            stream=call.streamed,
            usage=usage,
            cost_usd=cost,
            cost_breakdown_usd=breakdown,
            cumulative_cost_usd=self.budget.settled,
            usage_unknown=unknown,
            max_tokens=call.reservation.max_tokens,
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
            cache_miss_reason=scanner.miss_reason,
        )
        if ok:
            without_cache = self.pricer.without_cache(call.model, usage)
            record = replace(
                record,
                cost_without_cache_usd=without_cache,
                saved_by_cache_usd=without_cache - cost,
            )
        else:
            record = replace(
                record,
                error_type=_error_type(status, scanner, transport_error, sent),
                error=_error_text(status, scanner, transport_error),
            )
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

    def start(self, upstream: str) -> None:
        self._write(
            ProxyRunStart(
                started_at=utc_now_iso(),
                provider="anthropic",
                upstream=upstream,
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
        return f"the response's {scanner.bad_usage}: its worst case is kept"
    return "the response ended before it was complete (connection dropped)"
