"""The one meter of model calls, for both faces: our agent's calls (agent/call.py) and any
client's calls through the proxy (proxy/meter.py).

    plan     the request's price modifiers, its size, its worst case; the least of that and
             a fair share of what is left, max_tokens lowered to it
    reserve  the hold, before the request leaves; a request that does not fit only because
             of what others hold in flight waits (bounded) for them to settle
    settle   what it billed, by the same distrust rules whatever the face:
             - a count below the local estimate is not believed;
             - an answer that names another model is priced as the dearer of the two;
             - usage never seen keeps the worst case (`usage_unknown`);
             - output unknown after a cut (only message_start seen) keeps the most output
               the request allowed (`output_unknown`);
             - usage above the hold is recorded as billed, flagged `over_reservation`, and
               later holds on that model are scaled up by what it showed;
             - where the response says it ran (`usage.inference_geo`, `speed`) is what it is
               priced as.

Where the faces differ, the difference is a parameter: `fair_share` (the proxy serves many
clients at once, so a request that asks for more than its share of what is left holds its
share; the agent's calls under one budget come one at a time, its sub-agents on slices of
their own, so one call may hold all that is left) and `wait_s` (how long a request waits for
holds in flight to settle). The agent retries for itself; the proxy cannot retry for its
client, and forwards bytes: both hand `settle` what they saw as a `Seen`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Any

from tuiagent.cost.budget import (
    Bounds,
    Budget,
    Hold,
    Reservation,
    estimated_with_margin,
    least_useful_cost,
    plan_reservation,
)
from tuiagent.cost.pricing import (
    STANDARD,
    Cost,
    Modifiers,
    Pricer,
    UnpricedModelError,
    UnpricedModifierError,
)
from tuiagent.errors import UsageError
from tuiagent.ledger import BudgetLine, Scopes
from tuiagent.llm.tokens import (
    MAX_TOKENS,
    PER_MESSAGE_OVERHEAD,
    TokenUsage,
    estimate_request_tokens,
    holds_documents,
    loadable_tokens,
)

# What asks the API's free count_tokens for a request: its `input_tokens` as the answer
# gave it (any JSON value: the meter checks it), None when there is no count to be had.
# It raises to stop the call (a bad key).
Counter = Callable[[dict[str, Any]], Awaitable[object]]

THINKING_MIN_BUDGET = 1024  # the API's smallest thinking budget
WAIT_POLL_S = 0.05  # how often a waiting request looks again (holds may settle elsewhere)
_NO_LIMIT = Decimal(10) ** 15  # room for any worst case (dollars)
FACTOR_PLACES = Decimal("0.000001")


# --- sizing: how big a request is, without a round trip where one cannot change the outcome
#
# A conversation re-sends its history with every call. The previous call of the same
# conversation billed its input exactly, and its output is the answer the history now ends
# with: together, the exact size of the unchanged prefix. Only what was added since (the
# answer as re-sent, the new messages) is estimated, with the margin.
#
# A conversation is recognised by what it is made of, not by who sends it: its frame (model,
# tools, system) and its messages, each hashed with the cache markers aside (they move every
# call). So the proxy, which sees the calls of many clients and sessions interleaved, finds
# the call a request continues as the agent finds its own previous call.


@dataclass(frozen=True)
class Size:
    """A request's input tokens as reserved, and where the figure came from:
    count_tokens | estimate (the local one with its margin) | prefix+estimate."""

    tokens: int
    source: str  # count_tokens | estimate | prefix+estimate | window (see `uncounted`)


def _unmarked(blocks: Any) -> Any:
    """Blocks as the API reads them, cache markers aside."""
    if isinstance(blocks, str):
        return [{"type": "text", "text": blocks}] if blocks else []
    if not isinstance(blocks, list):
        return blocks
    return [
        {k: v for k, v in b.items() if k != "cache_control"} if isinstance(b, dict) else b
        for b in blocks
    ]


def _hash(value: Any) -> bytes:
    data = json.dumps(value, sort_keys=True, default=str)
    return hashlib.blake2b(data.encode(), digest_size=16).digest()


def _chain(request: Mapping[str, Any]) -> list[bytes]:
    """chain[i]: the digest of the frame and the first i messages."""
    frame = [
        request.get("model"),
        _unmarked(request.get("tools")),
        _unmarked(request.get("system")),
    ]
    out = [_hash(frame)]
    for message in request.get("messages") or []:
        m = message if isinstance(message, Mapping) else {}
        step = _hash([m.get("role"), _unmarked(m.get("content"))])
        out.append(hashlib.blake2b(out[-1] + step, digest_size=16).digest())
    return out


@dataclass(frozen=True)
class _Billed:
    messages: int  # how many messages the call sent
    tokens: int  # its billed input plus its output: the prefix that follows it, exactly
    output: int


class Prefixes:
    """The last calls of each conversation, by what they sent (at most `size` of them)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._book: OrderedDict[bytes, _Billed] = OrderedDict()

    def note(self, request: Mapping[str, Any], usage: TokenUsage) -> None:
        """A call was billed `usage` for `request`: the next call of its conversation starts
        from it."""
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            return
        key = _chain(request)[-1]
        self._book[key] = _Billed(
            len(messages), usage.total_input_tokens + usage.output_tokens, usage.output_tokens
        )
        self._book.move_to_end(key)
        while len(self._book) > self.size:
            self._book.popitem(last=False)

    def known(self, request: Mapping[str, Any]) -> tuple[int, int] | None:
        """(exact tokens of the prefix, the estimate of what follows it) when `request`
        continues a call noted here; None when its prefix changed (another model, system or
        tools, the history edited) or no call of it was seen."""
        messages = request.get("messages")
        if not isinstance(messages, list) or len(messages) < 2:
            return None
        chain = _chain(request)
        for n in range(len(messages) - 1, 0, -1):
            billed = self._book.get(chain[n])
            if billed is None or billed.messages != n:
                continue
            self._book.move_to_end(chain[n])
            # What follows the prefix is estimated: a document in it cannot be.
            return None if holds_documents(messages[n:]) else self._split(billed, messages[n:])
        return None

    @staticmethod
    def _split(billed: _Billed, new: list[Any]) -> tuple[int, int]:
        """The exact part and the estimated part of what a billed call is followed by. Its
        answer, re-sent as the next message, is its output tokens (unless the re-sent answer
        estimates larger: then it was changed, and it is estimated with the rest)."""
        first = new[0] if isinstance(new[0], Mapping) else {}
        if first.get("role") == "assistant":
            answer = estimate_request_tokens({"messages": [first]})
            if answer <= billed.output:
                new = new[1:]
                return billed.tokens, estimate_request_tokens(
                    {"messages": new}
                ) + PER_MESSAGE_OVERHEAD
        exact = billed.tokens - billed.output
        return exact, estimate_request_tokens({"messages": new}) + PER_MESSAGE_OVERHEAD


def uncounted(
    model: str,
    request: dict[str, Any],
    estimate: int | None = None,
    bounds: Bounds | None = None,
) -> Size:
    """A request's input where no count can be had: the local estimate (`estimate`, else
    its own) with its margin; the request's whole window (`bounds`, else the model's own)
    when it holds a document, which the estimate cannot size (`holds_documents`)."""
    estimate = estimate_request_tokens(request) if estimate is None else estimate
    if holds_documents(request.get("messages")):
        window = (bounds or Bounds.of(model)).window
        return Size(max(estimated_with_margin(estimate), window), "window")
    return Size(estimated_with_margin(estimate), "estimate")


@dataclass(frozen=True)
class Plan:
    """A request ready to hold: as it will be sent, its modifiers and its reservation."""

    model: str
    request: dict[str, Any]  # max_tokens (and a thinking budget) lowered where they had to be
    modifiers: Modifiers
    reservation: Reservation
    lowered: str | None = None  # why max_tokens was lowered: "cap" or "fair share"
    scopes: Scopes | None = None  # the call's, for the ledger's budgets (session, key, model)

    @property
    def requested_default_geo(self) -> bool:
        return "inference_geo" not in self.request


@dataclass
class Held:
    """A plan held in flight: it may be sent. `settle` closes it, exactly once."""

    plan: Plan
    hold: Hold
    hold_id: str
    waited_s: float | None = None  # how long it waited for holds in flight to settle

    @property
    def request(self) -> dict[str, Any]:
        return self.plan.request

    @property
    def reservation(self) -> Reservation:
        return self.plan.reservation

    @contextlib.contextmanager
    def released_on_error(self) -> Iterator[None]:
        """Around what the face does once it is held and before it sends (its `hold`
        record): if that fails, the hold is released and the error raised, so nothing is
        sent unrecorded."""
        try:
            yield
        except BaseException:
            self.hold.release()
            raise


@dataclass(frozen=True)
class Unfit:
    """No useful call fits: what the least useful one needs, and what it was sized at."""

    needed: Decimal
    size: Size
    waited_s: float | None = None
    binding: BudgetLine | None = None  # the `[[budgets]]` budget that stopped it, if not the cap


@dataclass
class Waiting:
    """A request being planned and held. One that does not fit only because of what others
    hold in flight (here or, for the `[[budgets]]` in `scopes`, in other processes) waits
    up to the meter's `wait_s` for those holds to settle, planned again as they do; only
    money spent, or truly needed, refuses it. The face loops, so the plan stays its own
    (the agent tries its tiers):

        wait = meter.waiting(scopes)
        while True:
            wait.next_round()
            plan = ...  # within what is left now
            if plan is not None:
                held = await meter.hold_async(plan, label, wait.waited_s)
                if held is not None:
                    with held.released_on_error():
                        ...  # its `hold` record, before it is sent
                    return held  # else another request took what was left: plan again
            elif (unfit := await wait.unfit()) is not None:
                return unfit
    """

    meter: CallMeter
    scopes: Scopes | None
    started: float
    waited_s: float | None = None  # how long it has waited for holds to settle

    def next_round(self) -> None:
        """A new round of planning: what it needs is what this round's plans need."""
        self.meter.needed = None

    async def unfit(self) -> Unfit | None:
        """After a round where nothing fit: None once it has waited a poll for holds in
        flight to settle (plan again); why it does not fit when they could not make room,
        or it has waited `wait_s`."""
        meter = self.meter
        needed = meter.needed if meter.needed is not None else meter.budget.remaining
        late = meter.may_fit_later(needed, self.scopes)
        if not late or meter.clock() - self.started >= meter.wait_s:
            binding = meter.budget.binding(self.scopes)
            return Unfit(needed, Size(0, "estimate"), self.waited_s, binding)
        await meter.sleep(WAIT_POLL_S)
        self.waited_s = round(meter.clock() - self.started, 3)
        return None


@dataclass
class Seen:
    """What came back for a sent request, as a face saw it."""

    sent: bool = True  # False: it never left the machine (nothing billed)
    status: int | None = 200  # the HTTP status; None when no answer came
    usage: TokenUsage | None = None  # the last usage that could be read; None: none seen
    updates: int = 0  # usage reports read: message_start's, then message_delta's
    completed: bool = False  # the whole answer (message_stop, or a whole JSON Message)
    bad_usage: bool = False  # a usage that cannot be what was billed came after `usage`
    response_model: str = ""  # the model the answer names
    output_streamed: int = 0  # the local estimate of the output that streamed (after a cut)


@dataclass(frozen=True)
class Settled:
    """What a call billed, as recorded: its usage, its price, and the flags that say why."""

    usage: TokenUsage
    cost: Cost
    priced_as: str
    modifiers: Modifiers
    flags: dict[str, Any] = field(default_factory=dict)

    @property
    def usage_unknown(self) -> bool:
        return bool(self.flags.get("usage_unknown"))


def record_fields(held: Held, settled: Settled) -> dict[str, Any]:
    """The meter's part of a call's record, either face's: the settlement's flags, the hold
    it closes, whether max_tokens was lowered and why, how long it waited, the modifiers it
    was priced with, the model it was priced as."""
    return {
        **settled.flags,
        "priced_as": settled.priced_as,
        "hold_id": held.hold_id,
        "lowered": held.plan.lowered,
        "waited_s": held.waited_s,
        "modifiers": settled.modifiers.as_record() or None,
    }


@dataclass
class _Calibration:
    """What one model's server has shown beyond what was held (factors >= 1)."""

    input_factor: Decimal = Decimal(1)
    output_factor: Decimal = Decimal(1)
    price_factor: Decimal = Decimal(1)  # billed above the hold with tokens within it


class CallMeter:
    """Plans, holds and settles model calls against one budget."""

    def __init__(
        self,
        pricer: Pricer,
        budget: Budget,
        *,
        min_useful_tokens: int,
        fair_share: Decimal = Decimal(1),
        wait_s: float = 0.0,
        conversations: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pricer = pricer
        self.budget = budget
        self.min_useful_tokens = min_useful_tokens
        self.fair_share = fair_share
        self.wait_s = wait_s
        self.clock = clock
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self.prefixes = Prefixes(conversations)
        self.count_calls = 0  # count_tokens round trips made
        self.needed: Decimal | None = None  # what the last plan that did not fit needed
        self._calibration: dict[str, _Calibration] = {}

    # --- before sending: plan and hold --------------------------------------------------

    def modifiers(
        self, model: str, request: Mapping[str, Any], processing: str = "standard"
    ) -> Modifiers:
        """The request's price modifiers as held, priced for `model` (or `UsageError`). A
        request without `inference_geo` runs where its workspace defaults to, which no one
        here can see: it is held at the US-only price where the model has one, and settled
        at where the response says it ran."""
        mods = Modifiers.of_request(request, processing=processing)
        self.pricer.check_request(model, request, mods)
        if "inference_geo" in request:
            return mods
        us = dataclasses.replace(mods, inference_geo="us")
        try:
            self.pricer.ensure_priced(model, us)
        except UsageError:
            return mods
        return us

    async def size(
        self,
        model: str,
        request: dict[str, Any],
        modifiers: Modifiers,
        count: Counter | None,
        *,
        conversation: bool = True,
        scopes: Scopes | None = None,
        bounds: Bounds | None = None,
    ) -> Size:
        """The request's input tokens, asking count_tokens only where it may matter: when
        the prefix is not known (the first call of a conversation, or it changed), or when
        the uncertainty of the estimated part could decide whether the request fits. Where
        not even the fewest tokens it can be could fit, no count is asked; nor for a document
        (its pages), which nothing here can size to check a count: it is held at its window
        (`uncounted`) until a call of it is billed. An image is estimated at the most its
        pixels can bill (`image_tokens`), so a count of it is believed down to that.

        Deferred tool definitions (tool search) are not in the prompt, but the answer's
        searches may load them into its input: each is held as loaded once
        (`loadable_tokens`, with the estimate's margin); the searches' results are held by
        the reservation, per output token (cost/budget.py)."""
        loadable = loadable_tokens(request)
        loadable = estimated_with_margin(loadable) if loadable else 0
        estimate = estimate_request_tokens(request) + loadable
        known = self.prefixes.known(request) if conversation else None
        if known is not None:
            prefix, new = known
            upper = Size(
                max(prefix + estimated_with_margin(new) + loadable, estimate), "prefix+estimate"
            )
            room = self.budget.remaining_for(scopes)
            if self._fits(model, request, upper.tokens, modifiers, room, bounds):
                return upper
            least = max(prefix + new + loadable, estimate)
        else:
            upper = uncounted(model, request, estimate, bounds)
            least = estimate  # a count below the estimate is not believed
            if upper.source == "window":
                # A document (a PDF's pages: a few KB can be a hundred): nothing here can
                # check a count of it (a lying upstream would set the hold).
                return upper
        room = self._room()
        if count is None or not self._fits(model, request, least, modifiers, room, bounds):
            return upper  # a count could not make it fit
        counted = await self._count(request, count)
        if counted is None:
            return Size(max(upper.tokens, estimated_with_margin(estimate)), upper.source)
        return Size(max(counted + loadable, estimate), "count_tokens")

    async def _count(self, request: dict[str, Any], count: Counter) -> int | None:
        self.count_calls += 1
        value = await count(request)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS:
            return value
        return None  # not a count: not believed

    def plan(
        self,
        model: str,
        request: dict[str, Any],
        size: Size,
        modifiers: Modifiers = STANDARD,
        scopes: Scopes | None = None,
        bounds: Bounds | None = None,
    ) -> Plan | None:
        """The hold for this request within what is left: its worst case, or its fair share
        of what is left when it asks for more (never less than the useful minimum), with
        max_tokens lowered to it. None when no useful call fits (`needed` says what it
        would take). What is left is the run's cap and every `[[budgets]]` budget the call
        falls under (`scopes`); LedgerError when the ledger cannot be read."""
        remaining = self.budget.remaining_for(scopes)
        res = self._reservation(model, request, size, modifiers, remaining, bounds)
        if res is None:
            least = self._least(model, request, size.tokens, modifiers, bounds)
            self.needed = least if self.needed is None else min(self.needed, least)
            return None
        lowered = "cap" if res.max_tokens < res.requested_max_tokens else None
        share = remaining * self.fair_share
        if res.worst_case_usd > share:
            least = self._least(model, request, size.tokens, modifiers, bounds)
            shared = self._reservation(model, request, size, modifiers, max(share, least), bounds)
            if shared is not None and shared.worst_case_usd < res.worst_case_usd:
                res, lowered = shared, "fair share"
        sent = dict(request)
        if res.max_tokens != res.requested_max_tokens:
            sent["max_tokens"] = res.max_tokens
            thinking = sent.get("thinking")
            if isinstance(thinking, dict):
                budget_tokens = thinking.get("budget_tokens")
                if isinstance(budget_tokens, int) and budget_tokens >= res.max_tokens:
                    # (the useful minimum leaves room for the smallest thinking budget)
                    sent["thinking"] = {**thinking, "budget_tokens": res.max_tokens - 1}
        return Plan(model, sent, modifiers, res, lowered, scopes)

    def whole(
        self,
        model: str,
        request: dict[str, Any],
        size: Size,
        modifiers: Modifiers = STANDARD,
        scopes: Scopes | None = None,
        bounds: Bounds | None = None,
    ) -> Plan | None:
        """The request's whole worst case, nothing lowered and no share taken (a Message
        Batch's requests are held as they are sent); whether it fits is the caller's. None
        for a request no useful call can be made of."""
        res = self._reservation(model, request, size, modifiers, _NO_LIMIT, bounds)
        return None if res is None else Plan(model, dict(request), modifiers, res, scopes=scopes)

    async def hold_async(
        self, plan: Plan, label: str, waited_s: float | None = None
    ) -> Held | None:
        """Hold the plan's worst case in flight, awaiting the ledger without blocking the event
        loop; None if the budget moved since it was planned. The face writes its `hold`
        record at once, within `Held.released_on_error`: nothing is sent unrecorded."""
        hold = await self.budget.reserve_async(plan.reservation.worst_case_usd, label, plan.scopes)
        return None if hold is None else Held(plan, hold, uuid.uuid4().hex[:12], waited_s)

    async def reserve(
        self,
        model: str,
        request: dict[str, Any],
        count: Counter | None,
        *,
        label: str,
        modifiers: Modifiers | None = None,
        conversation: bool = True,
        scopes: Scopes | None = None,
        bounds: Bounds | None = None,
    ) -> Held | Unfit:
        """Size, plan and hold one request; when it does not fit only because of holds in
        flight, wait for them (`Waiting`). `bounds`: how far it reaches, as its betas
        allow (the model's own unless given)."""
        modifiers = modifiers if modifiers is not None else self.modifiers(model, request)
        bounds = bounds or Bounds.of(model)
        size = await self.size(
            model,
            request,
            modifiers,
            count,
            conversation=conversation,
            scopes=scopes,
            bounds=bounds,
        )
        wait = self.waiting(scopes)
        while True:
            wait.next_round()
            planned = self.plan(model, request, size, modifiers, scopes, bounds)
            if planned is not None:
                held = await self.hold_async(planned, label, wait.waited_s)
                if held is not None:
                    return held
            elif (unfit := await wait.unfit()) is not None:
                return dataclasses.replace(unfit, size=size)

    def waiting(self, scopes: Scopes | None = None) -> Waiting:
        """A request about to be planned and held (see `Waiting`)."""
        return Waiting(self, scopes, self.clock())

    def may_fit_later(self, needed: Decimal, scopes: Scopes | None = None) -> bool:
        """Would `needed` fit once the holds in flight settle (at nothing)? Here, and in the
        `[[budgets]]` the call falls under, where other processes' holds count too."""
        b = self.budget.snapshot()
        if needed > self._room():
            return False
        line = self.budget.binding(scopes)
        if line is None:
            return b.in_flight > 0
        return needed <= line.cap - line.spent and (b.in_flight > 0 or line.held > 0)

    def _room(self) -> Decimal:
        """What is left of the cap when nothing is in flight."""
        b = self.budget.snapshot()
        return max(b.cap - b.settled, Decimal(0))

    def _fits(
        self,
        model: str,
        request: dict[str, Any],
        tokens: int,
        modifiers: Modifiers,
        room: Decimal,
        bounds: Bounds | None,
    ) -> bool:
        size = Size(tokens, "estimate")
        return self._reservation(model, request, size, modifiers, room, bounds) is not None

    def _useful(self, request: Mapping[str, Any]) -> int:
        """The fewest output tokens worth sending the request for: the useful minimum, and
        room for the smallest thinking budget when it thinks."""
        thinking = request.get("thinking")
        if isinstance(thinking, Mapping) and isinstance(thinking.get("budget_tokens"), int):
            return max(self.min_useful_tokens, THINKING_MIN_BUDGET + 1)
        return self.min_useful_tokens

    def _reservation(
        self,
        model: str,
        request: dict[str, Any],
        size: Size,
        modifiers: Modifiers,
        room: Decimal,
        bounds: Bounds | None,
    ) -> Reservation | None:
        cal = self._calibration.get(model, _Calibration())
        res = plan_reservation(
            self.pricer,
            model,
            request,
            size.tokens,
            size.source,
            room / cal.price_factor,
            self._useful(request),
            input_factor=cal.input_factor,
            output_factor=cal.output_factor,
            modifiers=modifiers,
            bounds=bounds,
        )
        if res is None or cal.price_factor == 1:
            return res
        return dataclasses.replace(res, worst_case_usd=res.worst_case_usd * cal.price_factor)

    def _least(
        self,
        model: str,
        request: dict[str, Any],
        tokens: int,
        modifiers: Modifiers,
        bounds: Bounds | None,
    ) -> Decimal:
        cal = self._calibration.get(model, _Calibration())
        least = least_useful_cost(
            self.pricer, model, request, tokens, self._useful(request), modifiers, bounds
        )
        return least * cal.price_factor

    # --- after: settle ------------------------------------------------------------------

    def settle(self, held: Held, seen: Seen) -> Settled:
        """Close the hold with what the call billed, by the distrust rules. Call it exactly
        once, in a `finally`, whatever happened."""
        plan, hold = held.plan, held.hold
        if not seen.sent:
            hold.release()
            return Settled(TokenUsage(), Cost(), plan.model, plan.modifiers, {"sent": False})
        if seen.status is not None and seen.status >= 400:
            hold.release()  # an error answer bills nothing
            return Settled(TokenUsage(), Cost(), plan.model, plan.modifiers)
        usage = seen.usage
        if usage is None or not self._plausible(usage):
            return self._worst_case(held)
        flags: dict[str, Any] = {}
        if not seen.completed or seen.bad_usage:
            if seen.updates <= 1 or seen.bad_usage:
                # message_start billed the input; the output the server went on to make is
                # unknown (a cut, an error, a client that left): the most the request allowed.
                output = max(usage.output_tokens, plan.reservation.output_tokens)
                flags["output_unknown"] = True
            else:
                output = max(usage.output_tokens, seen.output_streamed)
            usage = dataclasses.replace(usage, output_tokens=output)
        held_as = plan.modifiers
        if plan.requested_default_geo:  # not reported either: the API's default, global
            held_as = dataclasses.replace(held_as, inference_geo="global")
        modifiers = held_as.as_billed(usage)
        cost, priced_as, unpriced = self._price(held, usage, modifiers, seen.response_model)
        if seen.response_model and seen.response_model != plan.model:
            flags["model_mismatch"] = seen.response_model
        if unpriced:
            flags["unpriced_model"] = True
        if self._over(held, usage, cost):
            flags["over_reservation"] = True
        if cost.total == 0 and usage == TokenUsage():
            hold.release()
        else:
            hold.settle(cost.total)
        return Settled(usage, cost, priced_as, modifiers, flags)

    def note_prefix(self, held: Held, settled: Settled) -> None:
        """A completed call of a conversation: the next call of it starts from here."""
        if not settled.usage_unknown:
            self.prefixes.note(held.request, settled.usage)

    def worst_case(self, held: Held) -> Cost:
        """The hold as a cost: its output part, and the rest on input."""
        res = held.reservation
        rate = self.pricer.rates(held.plan.model, res.input_tokens, held.plan.modifiers).output
        out = min(rate * res.output_tokens, res.worst_case_usd)
        return Cost(input=res.worst_case_usd - out, output=out)

    def _worst_case(self, held: Held) -> Settled:
        cost = self.worst_case(held)
        held.hold.settle(cost.total)
        plan = held.plan
        return Settled(TokenUsage(), cost, plan.model, plan.modifiers, {"usage_unknown": True})

    @staticmethod
    def _plausible(usage: TokenUsage) -> bool:
        return all(0 <= v <= MAX_TOKENS for v in usage.as_record().values())

    def _price(
        self, held: Held, usage: TokenUsage, modifiers: Modifiers, response_model: str
    ) -> tuple[Cost, str, bool]:
        """As the requested model, or as the model the answer names where that is dearer. An
        answer naming a model the pricer does not know (or not with these modifiers) keeps
        at least the hold's worst case, and says so (True): its price is unknown, and may be
        the dearer."""
        plan = held.plan
        cost = self.pricer.price(plan.model, usage, modifiers)
        if response_model and response_model != plan.model:
            try:
                other = self.pricer.price(response_model, usage, modifiers)
            except (UnpricedModelError, UnpricedModifierError, LookupError):
                worst = self.worst_case(held)
                return (worst if worst.total > cost.total else cost), plan.model, True
            if other.total >= cost.total:
                return other, response_model, False
        return cost, plan.model, False

    def _over(self, held: Held, usage: TokenUsage, cost: Cost) -> bool:
        """Usage beyond what was held: later holds on this model take what it showed."""
        plan, res = held.plan, held.reservation
        max_tokens = int(plan.request["max_tokens"])
        over_out = usage.output_tokens > max_tokens
        over_in = usage.total_input_tokens > res.input_tokens
        over_cost = cost.total > held.hold.amount
        if not (over_out or over_in or over_cost):
            return False
        cal = self._calibration.setdefault(plan.model, _Calibration())
        if over_in and res.input_tokens > 0:
            ratio = Decimal(usage.total_input_tokens) / Decimal(res.input_tokens)
            cal.input_factor = max(cal.input_factor, cal.input_factor * ratio)
        if over_out:
            ratio = Decimal(usage.output_tokens) / Decimal(max(1, max_tokens))
            cal.output_factor = max(cal.output_factor, ratio)
        if over_cost and not (over_in or over_out) and held.hold.amount > 0:
            # Rounded up to a few places: holds scaled by it stay exact sums (a 28-digit
            # quotient would leave rounding dust in the budget's totals).
            ratio = (cost.total / held.hold.amount).quantize(FACTOR_PLACES, ROUND_CEILING)
            cal.price_factor = max(cal.price_factor, cal.price_factor * ratio)
        return True
