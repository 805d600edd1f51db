"""Message Batches through the proxy, metered like any call.

A batch is held at its creation: every request's worst case at batch rates (its input by the
local estimate with its margin: a batch is not counted request by request), one hold and one
`hold` record per request, so a batch that does not fit in what is left is refused before
it is sent, whole. Each request is settled when its result is read through the proxy (the
results' `succeeded` ones by their usage, by the meter's rules; `errored`, `canceled` and
`expired` ones bill nothing and release their hold); a batch that ended with nothing run
(cancelled, or expired, before any request succeeded) releases everything when the proxy
sees it ended. A batch whose results are never read keeps its worst case: held in the
dashboard's gauge, `in_flight_usd` at `run_end`, and in `report` (its holds have no call
record).

The upstream names where the results are in each batch object (`results_url`, an absolute
URL the SDKs fetch as it is): the proxy points it at itself, so that results are read
through it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from tuiagent.cost.budget import Bounds
from tuiagent.errors import UsageError
from tuiagent.ledger import LedgerError, Scopes
from tuiagent.llm.tokens import BadUsage, TokenUsage
from tuiagent.meter import Held, Seen, record_fields, uncounted
from tuiagent.proxy.body import BadBody, body_betas, check_message_params
from tuiagent.proxy.meter import Meter, NotAdmitted
from tuiagent.runs.log import utc_now_iso
from tuiagent.runs.records import ProxyAttempt, ProxyTurn

PURPOSE = "batch"
_BATCH_ID = re.compile(r"[A-Za-z0-9_\-]+")


class ResultsReader:
    """A batch's results (JSON Lines) as they pass to the client: each whole line settles
    its request."""

    def __init__(self, batches: Batches, batch_id: str) -> None:
        self.batches = batches
        self.batch_id = batch_id
        self._tail = b""

    def feed(self, chunk: bytes) -> None:
        data = self._tail + chunk
        lines = data.split(b"\n")
        self._tail = lines.pop()
        for line in lines:
            self._line(line)

    def finish(self) -> None:
        if self._tail.strip():
            self._line(self._tail)
        self._tail = b""

    def _line(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            result = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return  # a line that is not a result settles nothing: its request stays held
        self.batches.result(self.batch_id, result)


@dataclass
class BatchRequest:
    """One request of a batch, held."""

    custom_id: str
    turn: int
    held: Held
    started: float


@dataclass
class Pending:
    """A batch held, not yet created upstream."""

    client: str
    requests: list[BatchRequest] = field(default_factory=list)


class Batches:
    """The batches this proxy run created, and their requests' holds until settled."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.open: dict[str, dict[str, BatchRequest]] = {}  # batch id -> custom_id -> request

    # --- creation ---------------------------------------------------------------------

    async def hold(
        self,
        body: Any,
        client: str,
        scopes_of: Callable[[dict[str, Any]], Scopes],
        betas: tuple[str, ...] = (),
    ) -> Pending | NotAdmitted:
        """Every request of a batch to create held at its worst case, or the batch refused.
        `scopes_of` gives a request's scopes (its `[[budgets]]`); `betas` (the batch's
        `anthropic-beta` header, every request's) how far each may reach."""
        try:
            requests = _requests(body)
        except BadBody as exc:
            return self.meter.refuse(client, "", f"tuiagent proxy: refused before sending: {exc}")
        core = self.meter.core
        plans = []
        for i, (custom_id, params) in enumerate(requests):
            model = params["model"]
            try:
                modifiers = core.modifiers(model, params, processing="batch")
                bounds = Bounds.of(model, betas + body_betas(params))
                size = uncounted(model, params, bounds=bounds)
            except UsageError as exc:
                reason = f"requests.{i}.params: {exc}"
                return self.meter.refuse(client, model, _refusal(reason))
            except (TypeError, AttributeError, ValueError):
                reason = f"requests.{i}.params: cannot count its tokens to cap it"
                return self.meter.refuse(client, model, _refusal(reason))
            plan = core.whole(model, params, size, modifiers, scopes_of(params), bounds)
            if plan is None:
                return self.meter.refuse(client, model, _refusal(f"requests.{i}: no call fits"))
            plans.append((custom_id, plan))
        worst = sum((p.reservation.worst_case_usd for _, p in plans), start=Decimal(0))
        b = self.meter.budget.snapshot()
        if worst > b.remaining:
            model = plans[0][1].model
            return self.meter.refuse(
                client,
                model,
                _refusal(
                    f"a batch of {len(plans)} request(s) may bill ${worst:.4f} at worst (batch "
                    f"rates), which does not fit the cap: spent ${b.settled:.4f}, "
                    f"${b.in_flight:.4f} in flight, ${b.remaining:.4f} left; raise it with F3 "
                    "or --max-cost"
                ),
            )
        pending = Pending(client)
        for custom_id, plan in plans:
            self.meter.calls += 1
            turn = self.meter.calls
            try:
                held = await core.hold_async(plan, f"batch #{turn}")
            except LedgerError as exc:  # fail closed: none of it is sent
                self.failed(pending, str(exc), sent=False)
                return self.meter.refuse(client, plan.model, _refusal(str(exc)), turn=turn)
            if held is None:  # a `[[budgets]]` budget, or the cap moved while holding
                self.failed(pending, "a budget it falls under has no room for it", sent=False)
                reason = f"request {custom_id!r} of the batch does not fit a budget it falls under"
                return self.meter.refuse(client, plan.model, _refusal(reason), turn=turn)
            with held.released_on_error():  # nothing is sent unrecorded
                self.meter.write_hold(turn, client, held, PURPOSE)
            pending.requests.append(BatchRequest(custom_id, turn, held, self.meter.clock()))
        return pending

    def created(self, pending: Pending, batch: Any) -> None:
        """The upstream's answer to the creation: a batch (its holds kept until its results
        are read), or not (nothing billed: released)."""
        batch_id = batch.get("id") if isinstance(batch, dict) else None
        if not (isinstance(batch_id, str) and _BATCH_ID.fullmatch(batch_id)):
            self.failed(pending, "the upstream created no batch")
            return
        self.open[batch_id] = {r.custom_id: r for r in pending.requests}
        self.seen(batch)

    def failed(self, pending: Pending, why: str, *, sent: bool = True) -> None:
        """A creation that made no batch: each request's hold released, with its record."""
        for request in pending.requests:
            self._close(request, pending.client, None, None, "batch_not_created", why, sent)
        pending.requests.clear()

    # --- what comes back ----------------------------------------------------------------

    def seen(self, batch: Any) -> None:
        """A batch object passed by (created, retrieved, listed, cancelled): one that ended
        with no request run releases all it held."""
        if not isinstance(batch, dict):
            return
        batch_id = batch.get("id")
        counts = batch.get("request_counts")
        if (
            batch.get("processing_status") == "ended"
            and isinstance(counts, dict)
            and counts.get("succeeded") == 0
            and batch_id in self.open
        ):
            for request in list(self.open.pop(str(batch_id)).values()):
                self._close(request, "", str(batch_id), None, "never_ran", "ended, never ran")

    def result(self, batch_id: str, line: Any) -> None:
        """One line of a batch's results, as the client reads it: its request settled."""
        requests = self.open.get(batch_id)
        if requests is None or not isinstance(line, dict):
            return
        request = requests.pop(str(line.get("custom_id")), None)
        if not requests:
            self.open.pop(batch_id, None)
        if request is None:
            return  # not ours, or already settled (results read again)
        outcome = line.get("result")
        kind = outcome.get("type") if isinstance(outcome, dict) else None
        message = outcome.get("message") if isinstance(outcome, dict) else None
        if kind == "succeeded" and isinstance(message, dict):
            self._succeeded(request, batch_id, message)
        else:
            error = outcome.get("error") if isinstance(outcome, dict) else None
            text = json.dumps(error)[:300] if error is not None else str(kind)
            self._close(request, "", batch_id, None, str(kind or "unknown_result"), text)

    def _succeeded(self, request: BatchRequest, batch_id: str, message: dict[str, Any]) -> None:
        try:
            usage: TokenUsage | None = TokenUsage.from_api(message.get("usage"))
        except BadUsage:
            usage = None  # the meter keeps the worst case
        seen = Seen(
            usage=usage,
            updates=1,
            completed=True,
            response_model=str(message.get("model") or ""),
        )
        self._close(request, "", batch_id, seen, None, None, message=message)

    def _close(
        self,
        request: BatchRequest,
        client: str,
        batch_id: str | None,
        seen: Seen | None,
        error_type: str | None,
        error: str | None,
        sent: bool = True,
        message: dict[str, Any] | None = None,
    ) -> None:
        """Settle one request's hold (`seen` None: it billed nothing) and write its record."""
        meter, held = self.meter, request.held
        settled = meter.core.settle(held, seen or Seen(sent=sent, status=None if not sent else 400))
        ok = seen is not None and not settled.usage_unknown
        if ok:
            meter.transcript.request(request.turn, PURPOSE, held.request)
        res = held.reservation
        kind = ProxyTurn if ok else ProxyAttempt
        record = kind(
            turn=request.turn,
            purpose=PURPOSE,
            client=client,
            model=held.plan.model,
            usage=settled.usage,
            cost_usd=settled.cost.total,
            cost_breakdown_usd=None if settled.usage_unknown else settled.cost,
            cumulative_cost_usd=meter.budget.settled,
            max_tokens=int(held.request["max_tokens"]),
            max_tokens_requested=res.requested_max_tokens,
            input_tokens_counted=res.input_tokens,
            input_count_source=res.token_source,
            reserved_usd=res.worst_case_usd,
            status=200 if ok else None,
            stop_reason=(message or {}).get("stop_reason"),
            latency_s=round(meter.clock() - request.started, 4),
            ended_at=utc_now_iso(),
            request_id=batch_id,
            message_id=(message or {}).get("id"),
            batch_id=batch_id,
            custom_id=request.custom_id,
            **record_fields(held, settled),
        )
        if not ok:
            record = replace(record, error_type=error_type or "usage_unknown", error=error or "")
        meter.write(record)


def _refusal(reason: str) -> str:
    return f"tuiagent proxy: refused before sending: {reason}"


def _requests(body: Any) -> list[tuple[str, dict[str, Any]]]:
    """A batch creation's requests as (custom_id, params), each read as the meter needs."""
    if not isinstance(body, dict):
        raise BadBody("request body: Input should be a valid dictionary")
    requests = body.get("requests")
    if not isinstance(requests, list):
        raise BadBody("requests: Input should be a valid list")
    if not requests:
        raise BadBody("requests: List should have at least 1 item after validation, not 0")
    out: list[tuple[str, dict[str, Any]]] = []
    ids: set[str] = set()
    for i, item in enumerate(requests):
        if not isinstance(item, dict):
            raise BadBody(f"requests.{i}: Input should be a valid dictionary")
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            raise BadBody(f"requests.{i}.custom_id: Input should be a valid string")
        if custom_id in ids:
            raise BadBody(f"requests.{i}.custom_id: {custom_id!r} is used twice in the batch")
        ids.add(custom_id)
        check_message_params(item.get("params"), where=f"requests.{i}.params.")
        out.append((custom_id, item["params"]))
    return out


def results_url(batch: Any, base: str) -> Any:
    """The batch object with its `results_url` (if any) at the proxy (`base`)."""
    if isinstance(batch, dict) and batch.get("results_url") and isinstance(batch.get("id"), str):
        batch_id = batch["id"]
        if _BATCH_ID.fullmatch(batch_id):
            return {**batch, "results_url": f"{base}/v1/messages/batches/{batch_id}/results"}
    return batch
