"""A process's budgets over the ledger: the `[[budgets]]` of its config, for the calls of one
run (its session, user, key, client), each call adding its own (model, sub-agent).

`Budget` (cost/budget.py) reserves through a Stack: the run's cap in memory, every other
budget here, in the one ledger every process shares.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from decimal import Decimal

from tuiagent.ledger.scopes import BudgetSpec, Scopes
from tuiagent.ledger.store import (
    ANSWER_TIMEOUT_S,
    BudgetLine,
    Check,
    Ledger,
    LedgerError,
    LedgerHold,
    Refused,
)

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
            result = await asyncio.wait_for(asyncio.wrap_future(future), ANSWER_TIMEOUT_S)
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


def check(spec: BudgetSpec, value: str, simulated: bool, now: float) -> Check:
    """The budget `spec` for the scope value `value`, in the window `now` falls in."""
    start, end = spec.window.bounds(now)
    key = spec.counter_key(value, simulated)
    return Check(spec, value, key, spec.window.bucket(now), start, end, simulated)


def in_use(
    ledger: Ledger, specs: Sequence[BudgetSpec], *, limit: int | None = None
) -> tuple[list[BudgetLine], int]:
    """Each budget of `specs` as it stands, one line per scope value with calls in its
    window now (a global budget always), the most recently used first, at most `limit` per
    budget; and how many more there are."""
    now = ledger.clock()
    checks, more = [], 0
    for spec in specs:
        start, _ = spec.window.bounds(now)
        values = ledger.values(spec, start)
        if spec.scope == "global" and ("", False) not in values:
            values.append(("", False))
        shown = values if limit is None else values[:limit]
        more += len(values) - len(shown)
        checks += [check(spec, value, sim, now) for value, sim in shown]
    return ledger.read(checks), more
