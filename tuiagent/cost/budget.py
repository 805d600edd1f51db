"""The hard cap: every call is reserved at its worst case before it is sent.

Worst case of a call = its input tokens priced at the highest rate they can be billed at
given its cache breakpoints (tokens up to the last breakpoint may be written to the cache,
at the write rate of that breakpoint's lifetime; the rest at the input rate), plus
`max_tokens` at the output rate, plus what the server tools it offers can bill (web search
per use: `max_uses` of each, or as many uses as its output can ask for; and the passes of
the server's loop that read each server tool's result back, `_server_tools`). Cache reads only
ever lower the bill, so they are not counted on. If the worst case does not fit what is left of the cap, `max_tokens` is
lowered to what fits; below a useful minimum the call is not sent.

Input tokens come from the API's free `count_tokens` (the offline model's own count
offline); where no count can be had, from the local estimate times its safety margin.

The cap is one budget among those a call falls under: the config's `[[budgets]]` are held
in the ledger every process shares, through the run's `Stack` (at the end of this file).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, Decimal
from typing import Any

from tuiagent.config import TIERS, Settings
from tuiagent.cost.pricing import (
    MIN_SERVER_TOOL_CALL_TOKENS,
    SERVER_LOOP_ITERATIONS,
    STANDARD,
    Modifiers,
    Pricer,
    context_window,
)
from tuiagent.ledger import (
    BudgetLine,
    BudgetSpec,
    Ledger,
    LedgerError,
    LedgerHold,
    Refused,
    Scopes,
    open_ledger,
)
from tuiagent.ledger.store import ANSWER_TIMEOUT_S, Check, check
from tuiagent.llm.models import rules_for
from tuiagent.llm.tokens import (
    ESTIMATE_SAFETY_MARGIN,
    REQUEST_OVERHEAD,
    FedBack,
    compaction_trigger,
    fed_back_results,
    request_blocks,
    search_result_tokens,
)
from tuiagent.paths import data_dir


@dataclass(frozen=True)
class Reservation:
    """What a call may cost at most, and the max_tokens that keeps it within the cap."""

    model: str
    input_tokens: int  # reserved input: the count (or estimate) times what the server showed
    token_source: str  # count_tokens | estimate | prefix+estimate
    max_tokens: int
    requested_max_tokens: int
    output_tokens: int  # reserved output: max_tokens, or more where the server overshot it
    worst_case_usd: Decimal


def _writable_tokens(request: dict[str, Any], input_tokens: int) -> tuple[int, int]:
    """Tokens that may be billed as 1h and as 5m cache writes.

    The local estimate says where the breakpoints fall; the counted total sets the scale
    (never scaled down, so a count below the estimate cannot shrink the reservation).
    """
    running = REQUEST_OVERHEAD
    last_1h = last_any = 0
    for block, n in request_blocks(request):
        running += n
        marker = block.get("cache_control")
        if isinstance(marker, dict):
            last_any = running
            if marker.get("ttl") == "1h":
                last_1h = running
    auto = request.get("cache_control")
    if isinstance(auto, dict):  # automatic caching marks the last block
        last_any = running
        if auto.get("ttl") == "1h":
            last_1h = running
    scale = max(Decimal(input_tokens) / Decimal(max(running, 1)), Decimal(1))

    def scaled(n: int) -> int:
        return min(input_tokens, int((n * scale).to_integral_value(rounding=ROUND_CEILING)))

    w1h = scaled(last_1h)
    return w1h, max(0, scaled(last_any) - w1h)


def input_worst_case(
    pricer: Pricer,
    model: str,
    request: dict[str, Any],
    input_tokens: int,
    modifiers: Modifiers = STANDARD,
) -> Decimal:
    """The most `input_tokens` of this request can be billed at, given its breakpoints."""
    r = pricer.rates(model, input_tokens, modifiers)
    w1h, w5m = _writable_tokens(request, input_tokens)
    rest = input_tokens - w1h - w5m
    return (
        max(r.cache_write_1h, r.input) * w1h + max(r.cache_write_5m, r.input) * w5m + r.input * rest
    )


def least_useful_cost(
    pricer: Pricer,
    model: str,
    request: dict[str, Any],
    input_tokens: int,
    min_useful_tokens: int,
    modifiers: Modifiers = STANDARD,
    bounds: Bounds | None = None,
) -> Decimal:
    """What the smallest useful call of this request may cost: its input at worst plus the
    useful minimum of output (what the cap must leave for it to be sent)."""
    out = min(min_useful_tokens, int(request["max_tokens"]))
    bounds = bounds or Bounds.of(model)
    return (
        input_worst_case(pricer, model, request, input_tokens, modifiers)
        + pricer.rates(model, input_tokens, modifiers).output * out
        + _server_tools(pricer, model, request, out, input_tokens, modifiers, bounds)
    )


def _server_tools(
    pricer: Pricer,
    model: str,
    request: dict[str, Any],
    max_tokens: int,
    input_tokens: int,
    modifiers: Modifiers,
    bounds: Bounds,
) -> Decimal:
    """The most the request's server tools can bill when it is sent with `max_tokens`: their
    fees (`Pricer.server_tool_worst_case`), and the passes of the server's loop.

    After a server tool's call the API samples again, and that pass reads the whole input
    again, with what the answer holds so far (at most `max_tokens`) and the tool's results
    (recorded for tool search: shared/wire/stream_tool_use_input_json_delta.yaml, 702 input
    tokens before its search, 1,591 after). The loop stops at SERVER_LOOP_ITERATIONS passes
    (then `pause_turn`), or when the tools' `max_uses` are spent. So each pass is held as
    reading `input_tokens` (the deferred definitions in it as loaded: the meter holds them),
    `max_tokens` and every result at its largest (a tool search's `search_result_tokens`
    with the estimate's margin; a web fetch's `max_content_tokens`), at the input rate, and
    never more than the request's window (`bounds`). A result nothing bounds (a web
    search's, code's output, an MCP server's answer, a fetch without `max_content_tokens`)
    may fill the window: each pass is held as the whole window. Linear in `max_tokens` up
    to the window, as the cap's fitting needs."""
    fees = pricer.server_tool_worst_case(model, {**request, "max_tokens": max_tokens})
    per_search = search_result_tokens(request)
    fed = fed_back_results(request)
    passes = _loop_passes(per_search, fed)
    fees += _compaction(pricer, model, request, input_tokens, modifiers, passes, bounds)
    if not passes:
        return fees
    window = bounds.window
    results = passes * estimated_with_margin(per_search) if per_search else 0
    results += fed.tokens or 0 if fed else 0
    per_pass = min(window, input_tokens + max_tokens + results)
    if fed is not None and fed.tokens is None:
        per_pass = window
    rate = pricer.rates(model, per_pass, modifiers).input
    return fees + rate * passes * per_pass


def _loop_passes(per_search: int, fed: FedBack | None) -> int:
    """The passes the server's loop may add: none without tool search or a tool whose
    results are read back; SERVER_LOOP_ITERATIONS, or fewer where those tools' `max_uses`
    allow fewer (tool search has no such limit)."""
    if not per_search and fed is None:
        return 0
    if not per_search and fed is not None and fed.uses is not None:
        return min(SERVER_LOOP_ITERATIONS, fed.uses)
    return SERVER_LOOP_ITERATIONS


def _compaction(
    pricer: Pricer,
    model: str,
    request: dict[str, Any],
    input_tokens: int,
    modifiers: Modifiers,
    passes: int,
    bounds: Bounds,
) -> Decimal:
    """What compaction may add to a request that asks for it (`compaction_trigger`): its
    pass reads the input (held already) and writes a summary, which nothing bounds but the
    most output (`bounds`); the answer's pass then reads the summary and what follows it
    (at most the input again, never more than the window), at the dearest input rate (it
    may write the cache). Only where the input reaches the trigger, or a server tool's loop (its
    `passes` more) may grow it there; in that loop, once per pass."""
    trigger = compaction_trigger(request)
    if trigger is None or (input_tokens < trigger and not passes):
        return Decimal(0)
    summary = bounds.max_output
    again = min(bounds.window, input_tokens + summary)
    r = pricer.rates(model, again, modifiers)
    times = 1 + passes
    reread = max(r.input, r.cache_write_5m, r.cache_write_1h) * again
    return times * (r.output * summary + reread)


MAX_OUTPUT = 128_000  # the most any model writes in one pass, for a model without rules


# How far a request reaches is its model's, unless its betas widen it (the `anthropic-beta`
# header, or a body's `anthropic_beta` / `betas`: proxy/body.py): a `context-<N>m-*` beta
# (context-1m-2025-08-07) opens an N-million-token window, an `output-<N>k-*` one
# (output-128k-2025-02-19, output-300k-2026-03-24) N thousand tokens of output. The betas
# below are known to do neither. Any other (one this table has not met) may: it reaches at
# least as far as the longest documented window and output.
LONG_CONTEXT_WINDOW = 1_000_000
LONGEST_OUTPUT = 300_000  # output-300k-2026-03-24
_WIDER = re.compile(r"context-(\d{1,4})m-.+")
_LONGER = re.compile(r"output-(\d{1,4})k-.+")
PLAIN_BETAS = frozenset(
    {
        # the SDK's AnthropicBetaParam (anthropic 2.17), the window and output ones aside;
        # server-side-fallback and fallback-credit (another model may answer) left out
        "advisor-tool-2026-03-01",
        "agent-memory-2026-07-22",
        "cache-diagnosis-2026-04-07",
        "code-execution-2025-05-22",
        "code-execution-2025-08-25",
        "compact-2026-01-12",
        "compact-2026-09-04",
        "computer-use-2024-10-22",
        "computer-use-2025-01-24",
        "computer-use-2025-11-24",
        "context-management-2025-06-27",
        "dev-full-thinking-2025-05-14",
        "extended-cache-ttl-2025-04-11",
        "fast-mode-2026-02-01",
        "files-api-2025-04-14",
        "inline-tools-2026-09-15",
        "interleaved-thinking-2025-05-14",
        "mcp-client-2025-04-04",
        "mcp-client-2025-11-20",
        "mcp-client-2026-09-15",
        "message-batches-2024-09-24",
        "mid-conversation-output-config-2026-07-01",
        "mid-conversation-system-clear-at-2026-08-21",
        "mid-conversation-tool-changes-2026-07-01",
        "model-context-window-exceeded-2025-08-26",
        "pdfs-2024-09-25",
        "prompt-caching-2024-07-31",
        "skills-2025-10-02",
        "structured-outputs-2025-11-13",
        "task-budgets-2026-03-13",
        "thinking-binding-controls-2026-08-01",
        "thinking-display-updates-2026-08-18",
        "thinking-token-count-2026-05-13",
        "token-counting-2024-11-01",
        "token-efficient-tools-2025-02-19",
        "web-search-2025-03-05",
        # what the leading coding agent (claude-code 2.1.197) sends or names beside them
        "advanced-tool-use-2025-11-20",
        "claude-code-20250219",
        "effort-2025-11-24",
        "mid-conversation-system-2026-04-07",
        "oauth-2025-04-20",
        "prompt-caching-scope-2026-01-05",
        "structured-outputs-2025-12-15",
        "tool-search-tool-2025-10-19",
    }
)


@dataclass(frozen=True)
class Bounds:
    """How far one pass of a request can reach: the most input it reads (`window`) and the
    most output it writes (`max_output`), for its model as its `anthropic-beta` header
    allows (`of`). The API refuses a request past its window, and its server's loop stops
    there: the most a pass of that loop, or an input nothing else sizes, can be held as."""

    window: int
    max_output: int

    @classmethod
    def of(cls, model: str, betas: Iterable[str] = ()) -> Bounds:
        """The model's own (a model with no known window: the long one), widened by the
        betas asked (see PLAIN_BETAS)."""
        rules = rules_for(model)
        window = context_window(model) or LONG_CONTEXT_WINDOW
        output = rules.max_output if rules is not None else MAX_OUTPUT
        for beta in betas:
            name = beta.strip().lower()
            if not name or name in PLAIN_BETAS:
                continue
            if wider := _WIDER.fullmatch(name):
                window = max(window, int(wider[1]) * 1_000_000)
            elif longer := _LONGER.fullmatch(name):
                output = max(output, int(longer[1]) * 1_000)
            else:
                window = max(window, LONG_CONTEXT_WINDOW)
                output = max(output, LONGEST_OUTPUT)
        return cls(window, output)


def server_loop_note(model: str, request: dict[str, Any], bounds: Bounds | None = None) -> str:
    """What a refusal adds for a request whose server tools' results nothing bounds (why
    a small request needs so much): "" for any other."""
    fed = fed_back_results(request)
    if fed is None or fed.tokens is not None:
        return ""
    passes = _loop_passes(search_result_tokens(request), fed)
    window = (bounds or Bounds.of(model)).window
    own = Bounds.of(model).window
    why = f" its betas allow (the model's own: {own:,})" if window > own else ""
    return (
        f", and {passes} more pass(es) of the server's loop reading its server tools' results "
        f"back, each up to the {window:,}-token window{why} (nothing bounds a web "
        "search's results; max_uses, and a web fetch's max_content_tokens, hold less),"
    )


def _ceil(n: Decimal) -> int:
    return int(n.to_integral_value(rounding=ROUND_CEILING))


def plan_reservation(
    pricer: Pricer,
    model: str,
    request: dict[str, Any],
    input_tokens: int,
    token_source: str,
    remaining: Decimal,
    min_useful_tokens: int,
    *,
    input_factor: Decimal = Decimal(1),
    output_factor: Decimal = Decimal(1),
    modifiers: Modifiers = STANDARD,
    bounds: Bounds | None = None,
) -> Reservation | None:
    """The reservation for this call within `remaining`, or None if no useful call fits.

    Pure: the one computation of a call's worst case and of the max_tokens that fits, used
    by the agent's metered call and by the proxy. `input_factor` / `output_factor` (>= 1)
    are what this model's server has shown beyond its counts and beyond max_tokens: a
    server that once billed 1.5x its count is reserved at 1.5x from then on. `modifiers`
    (fast mode, batch, US-only inference) price every token. `bounds`: how far the request
    reaches (its window, its most output), the model's own unless given.
    """
    bounds = bounds or Bounds.of(model)
    requested = int(request["max_tokens"])
    reserved_input = max(input_tokens, _ceil(input_tokens * max(input_factor, Decimal(1))))
    out_factor = max(output_factor, Decimal(1))
    # Server tools: the uses their max_uses allow are a fixed part; a web search without
    # max_uses may be asked for every MIN_SERVER_TOOL_CALL_TOKENS of output, which bounds
    # it by a rate per output token.
    fixed = _server_tools(pricer, model, request, 0, reserved_input, modifiers, bounds)
    step = MIN_SERVER_TOOL_CALL_TOKENS
    search_rate = (
        _server_tools(pricer, model, request, step, reserved_input, modifiers, bounds) - fixed
    ) / step
    input_cost = input_worst_case(pricer, model, request, reserved_input, modifiers) + fixed
    out_rate = pricer.rates(model, reserved_input, modifiers).output
    if input_cost >= remaining:
        return None
    per_token = out_rate * out_factor + search_rate
    fits = int((remaining - input_cost) / per_token) if per_token > 0 else requested
    max_tokens = min(requested, fits)
    if max_tokens < min(min_useful_tokens, requested) or max_tokens < 1:
        return None

    def worst_at(max_tokens: int) -> tuple[int, Decimal]:
        output_tokens = max(max_tokens, _ceil(max_tokens * out_factor))
        searches = _server_tools(
            pricer, model, request, max_tokens, reserved_input, modifiers, bounds
        )
        searches -= fixed
        return output_tokens, input_cost + out_rate * output_tokens + searches

    output_tokens, worst = worst_at(max_tokens)
    if worst > remaining:  # rounding of the overshoot: one token less
        max_tokens -= 1
        output_tokens, worst = worst_at(max_tokens)
        if max_tokens < min(min_useful_tokens, requested) or max_tokens < 1 or worst > remaining:
            return None
    return Reservation(
        model=model,
        input_tokens=reserved_input,
        token_source=token_source,
        max_tokens=max_tokens,
        requested_max_tokens=requested,
        output_tokens=output_tokens,
        worst_case_usd=worst,
    )


class BudgetError(Exception):
    """A hold used twice (settled after release, released after settle)."""


@dataclass(frozen=True)
class BudgetSnapshot:
    """The budget as it stands after a change: what a gauge shows.

    `settled` is what calls have billed; `in_flight` what calls sent and not yet settled may
    still bill at most; `remaining` = cap - settled - in_flight (never negative). `budgets`
    are the config's `[[budgets]]` this run's calls fall under, as the ledger last showed
    them (the run's cap is one more budget, on top of them).
    """

    name: str
    cap: Decimal
    settled: Decimal
    in_flight: Decimal
    holds: int
    budgets: tuple[BudgetLine, ...] = ()

    @property
    def remaining(self) -> Decimal:
        return max(self.cap - self.settled - self.in_flight, Decimal(0))

    @property
    def tightest(self) -> BudgetLine | None:
        """The `[[budgets]]` budget with least left, if any."""
        return min(self.budgets, key=lambda line: line.left, default=None)


class Hold:
    """One call's reservation, in flight until `settle(actual)` or `release()` (exactly once).

    A hold made in a slice holds the same amount in every budget above it, so a child can
    never spend what its parent has not got. A hold under `[[budgets]]` is also written to
    the ledger (`entry`), once, by the budget that made it.
    """

    def __init__(
        self,
        budget: Budget,
        amount: Decimal,
        label: str,
        parent: Hold | None,
        entry: LedgerHold | None = None,
    ) -> None:
        self.budget = budget
        self.amount = amount
        self.label = label
        self._parent = parent
        self.entry = entry
        self.settled: Decimal | None = None
        self.released = False

    @property
    def open(self) -> bool:
        return self.settled is None and not self.released

    def settle(self, actual: Decimal) -> Decimal:
        """What the call billed. It may exceed the hold (a server that overbills): then the
        excess is spent all the same, and `over` says by how much."""
        if actual < 0:
            raise BudgetError(f"a call cannot bill a negative amount ({actual})")
        self.budget._close(self, actual)
        if self._parent is not None:
            self._parent.settle(actual)
        return actual

    def release(self) -> None:
        """Nothing was billed (the request never left, or the server says it billed $0)."""
        self.budget._close(self, None)
        if self._parent is not None:
            self._parent.release()

    @property
    def over(self) -> Decimal:
        if self.settled is None:
            return Decimal(0)
        return max(self.settled - self.amount, Decimal(0))


class Budget:
    """Owns a spending cap: what is settled, what is in flight, what is left.

    `reserve()` takes a call's worst case before it is sent and holds it in flight; the cap
    can be changed at any time but never below settled + in flight; `slice()` makes a child
    budget (a sub-agent's) whose holds are also held here, so the children together can
    never pass this cap. Listeners hear a `BudgetSnapshot` after every change.

    With a `stack` (the config's `[[budgets]]` over the ledger every tuiagent process
    shares), a hold must also fit every budget the call falls under: the hold is written
    to the ledger before the call is sent, and its settle replaces it there. The cap itself
    is this run's, kept here. A ledger that cannot be reached raises LedgerError from
    `reserve` and `remaining_for`: then nothing may be sent.

    Safe to use from several threads and tasks: each change is made under one lock.
    """

    def __init__(
        self,
        cap: Decimal,
        *,
        name: str = "session",
        parent: Budget | None = None,
        stack: Stack | None = None,
    ) -> None:
        if cap < 0:
            raise ValueError(f"a cap cannot be negative ({cap})")
        self.name = name
        self._cap = Decimal(cap)
        self._settled = Decimal(0)
        self._in_flight = Decimal(0)
        self._holds: set[Hold] = set()
        self._parent = parent
        self.stack = stack
        # One lock for a whole tree of budgets: a hold in a slice changes its parents too.
        self._lock: threading.RLock = threading.RLock() if parent is None else parent._lock
        self._listeners: list[Callable[[BudgetSnapshot], None]] = []

    # --- reading -----------------------------------------------------------

    @property
    def cap(self) -> Decimal:
        return self._cap

    @property
    def settled(self) -> Decimal:
        return self._settled

    @property
    def in_flight(self) -> Decimal:
        return self._in_flight

    def _room(self) -> Decimal:
        """This budget's room in memory, and every parent's."""
        with self._lock:
            room = max(self._cap - self._settled - self._in_flight, Decimal(0))
            if self._parent is not None:
                room = min(room, self._parent._room())
            return room

    @property
    def remaining(self) -> Decimal:
        """What a new hold may take here: this budget's room, every parent's, and that of
        the `[[budgets]]` every call of this run falls under ($0 while the ledger cannot be
        read: nothing can be sent then)."""
        try:
            return self.remaining_for(None)
        except LedgerError:
            return Decimal(0)

    def remaining_for(self, scopes: Scopes | None) -> Decimal:
        """What a hold for a call with these scopes (its model) may take: the run's room
        and every `[[budgets]]` budget's it falls under. Raises LedgerError."""
        room = self._room()
        line = self.binding(scopes)
        return room if line is None else min(room, line.left)

    def binding(self, scopes: Scopes | None = None) -> BudgetLine | None:
        """The `[[budgets]]` budget with least left for such a call, when it leaves less than
        the run's cap does (then it is what stops a call); None when the cap binds first.
        Raises LedgerError."""
        if self.stack is None:
            return None
        line = self.stack.tightest(scopes)
        if line is None or line.left >= self._room():
            return None
        return line

    def snapshot(self) -> BudgetSnapshot:
        with self._lock:
            return BudgetSnapshot(
                self.name,
                self._cap,
                self._settled,
                self._in_flight,
                len(self._holds),
                self.stack.lines() if self.stack is not None else (),
            )

    def subscribe(self, listener: Callable[[BudgetSnapshot], None]) -> Callable[[], None]:
        """Call `listener` after every change; returns a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # --- changing ----------------------------------------------------------

    def reserve(
        self, amount: Decimal, label: str = "", scopes: Scopes | None = None
    ) -> Hold | None:
        """Hold `amount` in flight, or None if it does not fit what is left here, above, or
        in a `[[budgets]]` budget the call falls under (then `binding(scopes)` names it).
        With a ledger, the hold is written to it before this returns; LedgerError if it
        cannot be."""
        hold = self._take_here(amount, label)
        if hold is None or self.stack is None:
            return self._done(hold)
        try:
            entry = self.stack.hold(amount, scopes, label)
        except BaseException:
            self._untake(hold)
            raise
        return self._done(hold, entry)

    async def reserve_async(
        self, amount: Decimal, label: str = "", scopes: Scopes | None = None
    ) -> Hold | None:
        """`reserve`, awaiting the ledger's commit without blocking the event loop (the
        proxy's other streams go on meanwhile, and its holds are written in batches)."""
        hold = self._take_here(amount, label)
        if hold is None or self.stack is None:
            return self._done(hold)
        try:
            entry = await self.stack.hold_async(amount, scopes, label)
        except BaseException:
            self._untake(hold)
            raise
        return self._done(hold, entry)

    def _take_here(self, amount: Decimal, label: str) -> Hold | None:
        if amount < 0:
            raise BudgetError(f"a reservation cannot be negative ({amount})")
        with self._lock:
            if amount > self._room():
                return None
            return self._take(amount, label)

    def _done(self, hold: Hold | None, entry: LedgerHold | Refused | None = None) -> Hold | None:
        """The hold, once the ledger took it (or None: the hold here is undone)."""
        if hold is None:
            return None
        if isinstance(entry, Refused):
            self._untake(hold)
            return None
        hold.entry = entry
        self._changed_up()
        return hold

    def _take(self, amount: Decimal, label: str) -> Hold:
        """The hold here and in every parent, told to no one yet (the lock is held)."""
        parent_hold = self._parent._take(amount, label) if self._parent is not None else None
        hold = Hold(self, amount, label, parent_hold)
        self._holds.add(hold)
        self._in_flight += amount
        return hold

    def _untake(self, hold: Hold) -> None:
        """Undo `_take`: the ledger did not take the hold."""
        with self._lock:
            level: Hold | None = hold
            while level is not None:
                level.budget._holds.discard(level)
                level.budget._in_flight -= level.amount
                level.released = True
                level = level._parent

    def _changed_up(self) -> None:
        if self._parent is not None:
            self._parent._changed_up()
        self._changed()

    def set_cap(self, cap: Decimal) -> Decimal:
        """Set the cap; never below settled + in flight. Returns the cap in force."""
        if cap < 0:
            raise ValueError(f"a cap cannot be negative ({cap})")
        with self._lock:
            self._cap = max(Decimal(cap), self._settled + self._in_flight)
            cap_in_force = self._cap
        self._changed()
        return cap_in_force

    def slice(self, amount: Decimal, name: str) -> Budget:
        """A child budget with at most `amount` (never more than is left here now). Its
        holds are held here too, and its settlements count here as they happen. Its calls
        are a sub-agent's: `[[budgets]]` of scope agent apply to them."""
        stack = None
        if self.stack is not None:
            session = self.stack.scopes.session
            stack = self.stack.child(Scopes(agent=f"{session}/{name}" if session else name))
        with self._lock:
            return Budget(min(Decimal(amount), self.remaining), name=name, parent=self, stack=stack)

    def _close(self, hold: Hold, actual: Decimal | None) -> None:
        with self._lock:
            if not hold.open:
                raise BudgetError(f"hold {hold.label!r} was already settled or released")
            self._holds.discard(hold)
            # Amounts of 28 digits (a price factor's quotient) leave a rounding residue in the
            # running sum: with nothing in flight, nothing is.
            self._in_flight = self._in_flight - hold.amount if self._holds else Decimal(0)
            if actual is None:
                hold.released = True
            else:
                hold.settled = actual
                self._settled += actual
        if hold.entry is not None and self.stack is not None:
            self.stack.settle(hold.entry, actual)
        self._changed()

    def _changed(self) -> None:
        if not self._listeners:
            return
        snapshot = self.snapshot()
        for listener in list(self._listeners):
            listener(snapshot)

    def close(self) -> None:
        """The run is over: its settles are written to the ledger and its lease given up
        (a budget made by `open_run_budget` owns its ledger)."""
        if self.stack is not None and self._parent is None:
            self.stack.ledger.close()


def open_run_budget(
    settings: Settings, scopes: Scopes, *, what: str, name: str = "session"
) -> Budget:
    """A run's budget: its cap (`max_cost_usd`) kept here, over the ledger the config names
    (SQLite in the data dir by default) with its `[[budgets]]`. LedgerError (one line) when
    the ledger cannot be opened: then the run must not start."""
    ledger = open_ledger(
        settings.ledger.url, data_dir(), lease_s=settings.ledger.lease_s, what=what
    )
    # Each model's tier, as a table (the first tier a model is configured for, as
    # `tier_of` says): the ledger looks it up for each call, and never calls back.
    tiers: dict[str, str] = {}
    for tier in TIERS:
        tiers.setdefault(settings.router.model_for(tier), tier)
    stack = Stack(ledger, settings.ledger.budgets, scopes, tier_of=tiers.get)
    try:
        ledger.register(settings.ledger.budgets)
        stack.tightest()  # what they stand at, for the gauge before the first call
    except BaseException:
        ledger.close()
        raise
    return Budget(settings.run.max_cost_usd, name=name, stack=stack)


def estimated_with_margin(estimate: int) -> int:
    return int(estimate * ESTIMATE_SAFETY_MARGIN) + 1


# The run's other budgets: the `[[budgets]]` of its config over the shared ledger, for the
# calls of one run (its session, user, key, client), each call adding its own (model,
# sub-agent). `Budget` reserves through a Stack: the run's cap in memory, every other budget
# in the one ledger every process shares.

MAX_LINES = 64  # budgets a snapshot remembers (a proxy sees many sessions)


class Stack:
    def __init__(
        self,
        ledger: Ledger,
        specs: Sequence[BudgetSpec],
        scopes: Scopes,
        *,
        tier_of: Callable[[str], str | None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.specs = tuple(specs)
        self.scopes = scopes
        self.tier_of = tier_of
        # The budgets as the last reserve, settle or read left them, by (title, value, sim):
        # what a snapshot shows without asking the database.
        self._lines: dict[tuple[str, str, bool], BudgetLine] = {}
        self._lock = threading.Lock()

    def child(self, scopes: Scopes) -> Stack:
        """The same budgets for calls with more scopes (a sub-agent's)."""
        stack = Stack(self.ledger, self.specs, self.scopes.merged(scopes), tier_of=self.tier_of)
        stack._lines, stack._lock = self._lines, self._lock  # one view of the budgets
        return stack

    def scopes_for(self, call: Scopes | None) -> Scopes:
        scopes = self.scopes.merged(call)
        if scopes.tier is None and scopes.model is not None and self.tier_of is not None:
            scopes = replace(scopes, tier=self.tier_of(scopes.model))
        return scopes

    def checks(self, scopes: Scopes) -> list[Check]:
        """The budgets a call with these scopes falls under, at the ledger's clock."""
        now = self.ledger.clock()
        found = []
        for spec in self.specs:
            value = spec.applies(scopes)
            if value is not None:
                found.append(check(spec, value, scopes.simulated, now))
        return found

    def tightest(self, call: Scopes | None = None) -> BudgetLine | None:
        """The budget with least left for such a call (None if none applies). Raises
        LedgerError when the ledger cannot be read."""
        lines = self.ledger.read(self.checks(self.scopes_for(call)))
        self._note(lines)
        return min(lines, key=lambda line: line.left, default=None)

    def hold(self, amount: Decimal, call: Scopes | None, label: str) -> LedgerHold | Refused:
        """Write the hold, checked against every budget the call falls under (LedgerError
        when it cannot be written: then nothing may be sent)."""
        scopes = self.scopes_for(call)
        result = self.ledger.reserve(amount, self.checks(scopes), scopes, label)
        self._note(result.lines if isinstance(result, LedgerHold) else (result.line,))
        return result

    async def hold_async(
        self, amount: Decimal, call: Scopes | None, label: str
    ) -> LedgerHold | Refused:
        """`hold`, awaited without blocking the event loop."""
        scopes = self.scopes_for(call)
        future = self.ledger.submit(amount, self.checks(scopes), scopes, label)
        try:
            # Not asyncio.wait_for: in Python 3.11, cancelled after the future finished, it
            # returns the result and drops the cancellation (Ctrl-C as a hold was granted
            # went unheard, and the run went on spending).
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                result = await asyncio.wrap_future(future)
        except TimeoutError:
            future.add_done_callback(self._release_unclaimed)
            raise LedgerError(
                f"the ledger cannot be reached ({self.ledger.shown}: no answer in "
                f"{ANSWER_TIMEOUT_S:g}s)"
            ) from None
        except asyncio.CancelledError:
            future.add_done_callback(self._release_unclaimed)
            raise
        self._note(result.lines if isinstance(result, LedgerHold) else (result.line,))
        return result

    def _release_unclaimed(self, future: concurrent.futures.Future[LedgerHold | Refused]) -> None:
        """A hold granted after its caller went (cancelled, or tired of waiting): nothing
        was sent under it, so it is released at nothing."""
        if not future.cancelled() and future.exception() is None:
            result = future.result()
            if isinstance(result, LedgerHold):
                self.ledger.settle(result.id, None)

    def settle(self, held: LedgerHold, actual: Decimal | None) -> None:
        """What the call billed (None: nothing). Never raises: a settle the database
        refuses is kept and tried again, and until then the hold counts at its worst case."""
        self.ledger.settle(held.id, actual)
        with self._lock:
            for line in held.lines:
                k = (line.title, line.value, line.simulated)
                now = self._lines.get(k)
                if now is None:
                    continue
                self._lines[k] = replace(
                    now,
                    held=max(now.held - held.amount, Decimal(0)),
                    spent=now.spent + (actual or Decimal(0)),
                )

    def _note(self, lines: Sequence[BudgetLine]) -> None:
        with self._lock:
            for line in lines:
                k = (line.title, line.value, line.simulated)
                self._lines.pop(k, None)
                self._lines[k] = line  # the newest last
            while len(self._lines) > MAX_LINES:
                self._lines.pop(next(iter(self._lines)))

    def lines(self) -> tuple[BudgetLine, ...]:
        """The budgets this process has seen, as they last stood."""
        with self._lock:
            return tuple(self._lines.values())
