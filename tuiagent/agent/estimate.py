"""An estimate before spending: the first call of a new message priced before it is sent
(its input counted as the reservation counts it, priced at the cache as the conversation
left it), and the whole message's range (p50 to p90) drawn from this workspace's earlier
messages and eval suites, with how many it was drawn from. Nothing is sent and nothing is
logged: `count_tokens` is free (the offline model counts locally).

The range scales with the message's size: each earlier message is kept as its cost over
its first call's input cost, so a message in a long conversation is not judged by the
short ones before it. That ratio scales the first call as the cache the last call left
would price it: after a tier change the new model's cache is cold (after a pause, every
model's), and its first call's write is added once, not multiplied by ratios learned
from first calls that read a cache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from tuiagent.agent.call import Caller
from tuiagent.agent.context import Conversation, RunState
from tuiagent.agent.router import Router, request_words
from tuiagent.cost.display import money as show_money
from tuiagent.cost.pricing import ZERO, usd
from tuiagent.errors import TuiagentError
from tuiagent.llm.tokens import estimate_request_tokens
from tuiagent.runs.layout import RunFile, list_runs
from tuiagent.runs.log import read_records
from tuiagent.runs.records import money_of, str_of

INPUT_KINDS = ("input", "cache_write", "cache_read")
MIN_OF_KIND = 5


def quantile(values: list[Decimal], q: float) -> Decimal:
    """The nearest-rank quantile (an observed value, never an interpolated one)."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)), 1) - 1]


@dataclass(frozen=True)
class Estimate:
    tier: str
    model: str
    input_tokens: int
    token_source: str  # count_tokens | estimate | prefix+estimate (the reservation's)
    first_call_usd: Decimal  # the first call's input, at the cache as it stands
    first_call_held_usd: Decimal | None  # what its hold would be (None: it does not fit)
    p50_usd: Decimal | None  # the whole message (None: nothing to draw from)
    p90_usd: Decimal | None
    drawn_from: int

    def as_json(self) -> dict[str, Any]:
        def money(x: Decimal | None) -> float | None:
            return None if x is None else usd(x)

        return {
            "tier": self.tier,
            "model": self.model,
            "input_tokens": self.input_tokens,
            "token_source": self.token_source,
            "first_call_usd": money(self.first_call_usd),
            "first_call_held_usd": money(self.first_call_held_usd),
            "p50_usd": money(self.p50_usd),
            "p90_usd": money(self.p90_usd),
            "drawn_from": self.drawn_from,
        }

    def short(self) -> str:
        """The line under the app's input: what fits 80 columns."""
        first = f"first call {show_money(self.first_call_usd)} ({self.input_tokens:,} in)"
        if self.p50_usd is None or self.p90_usd is None:
            return f"estimate: {first}; no earlier messages here for a range"
        return (
            f"estimate: {first}, message {show_money(self.p50_usd)}-"
            f"{show_money(self.p90_usd)} (p50-p90 of {self.drawn_from})"
        )

    def line(self) -> str:
        """One line, as `run --estimate` prints it and the app shows it under the input."""
        first = (
            f"first call ${self.first_call_usd:.6f} ({self.input_tokens:,} tokens in, {self.model})"
        )
        if self.p50_usd is None or self.p90_usd is None:
            return f"{first}; whole message: no earlier messages here to draw a range from"
        return (
            f"{first}; whole message ${self.p50_usd:.6f}-${self.p90_usd:.6f} (p50-p90 "
            f"of {self.drawn_from} earlier message{'s' if self.drawn_from != 1 else ''})"
        )


def _input_cost(turn: dict[str, Any]) -> Decimal:
    raw = turn.get("cost_breakdown_usd")
    if not isinstance(raw, dict):
        return ZERO
    return sum((money_of(raw.get(k)) or ZERO for k in INPUT_KINDS), ZERO)


def kind_of(prompt: str) -> tuple[str, ...]:
    """What kind of request a prompt is, as the router reads it (its words of reasoning and
    lookup): earlier messages of the same kind draw the range when there are enough."""
    return tuple(request_words(prompt))


def message_ratios(run: RunFile) -> list[tuple[tuple[str, ...], Decimal]]:
    """Each message of a run: its kind, and its whole cost over its first call's input cost."""
    out: list[tuple[tuple[str, ...], Decimal]] = []
    cost, first = ZERO, None
    kind_now: tuple[str, ...] = ()

    def close() -> None:
        if first is not None and first > 0:
            out.append((kind_now, cost / first))

    for rec in run.records:
        kind = rec.get("type")
        if kind == "user" and str_of(rec, "agent", "main") == "main":
            close()
            cost, first, kind_now = ZERO, None, kind_of(str_of(rec, "text"))
        elif kind in ("turn", "attempt"):
            cost += money_of(rec.get("cost_usd")) or ZERO
            main = str_of(rec, "agent", "main") == "main"
            if kind == "turn" and first is None and main and rec.get("purpose") == "agent":
                first = _input_cost(rec)
    close()
    return out


Ratio = tuple[tuple[str, ...], Decimal]


class History:
    """The earlier messages of one workspace: its other runs and eval suites (read once),
    and the messages of the run `own` names (its log, read again at each estimate)."""

    def __init__(self, log_dir: Path, workspace: Path, own: Path | None = None) -> None:
        self.log_dir, self.workspace, self.own = log_dir, str(workspace.resolve()), own
        self.ratios: list[Ratio] | None = None

    def load(self) -> list[Ratio]:
        if self.ratios is None:
            try:
                runs = list_runs(self.log_dir)
            except TuiagentError:
                runs = []
            self.ratios = [
                ratio
                for run in runs
                if run.path != self.own
                and (run.first("run_start") or {}).get("workspace") == self.workspace
                for ratio in message_ratios(run)
            ]
        if self.own is None:
            return self.ratios
        try:
            records, bad = read_records(self.own)
        except OSError:
            return self.ratios
        return self.ratios + message_ratios(RunFile(self.own.stem, self.own, records, bad))

    def drawn(self, prompt: str) -> list[Decimal]:
        """The ratios a range for `prompt` is drawn from: those of its kind when there are at
        least MIN_OF_KIND, else every one."""
        every = self.load()
        mine = [ratio for kind, ratio in every if kind == kind_of(prompt)]
        return mine if len(mine) >= MIN_OF_KIND else [ratio for _, ratio in every]


def _message(prompt: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": prompt}]}


async def estimate(
    prompt: str,
    history: History,
    *,
    state: RunState,
    conversation: Conversation,
    router: Router,
    caller: Caller,
    pin: str,
) -> Estimate:
    """What sending `prompt` now would cost: its first call (the request the next call
    would send, counted as its hold counts it, priced at the cache as it stands) and the
    whole message's range. Nothing is sent, held or logged."""
    state.history.append(_message(prompt))
    try:  # the request as the next call would build it (no await while it is in the history)
        decision = router.choose(
            prompt=prompt,
            input_tokens=estimate_request_tokens(conversation.body()),
            cache=caller.cache,
            now=caller.wall_clock(),
            pin=pin,
            spent=caller.spending.spent,
            cap=caller.budget.cap,
        )
        request = conversation.request(decision.model)
    finally:
        state.history.pop()
    size, plan = await caller.quote(decision.model, request)
    cache, now = caller.cache, caller.wall_clock()
    cached = cache.cached_prefix_tokens(decision.model, now)
    first = router.predict_cost(decision.model, size.tokens, cached, 0)
    # The first call as warm as the last call left the cache (on its model, expired or not),
    # as a message's first call usually is: the rest of the message reads what it writes.
    last = cache.models.get(cache.last_model or "")
    warm = max(cached, last.cached_prefix_tokens if last is not None else 0)
    usual = router.predict_cost(decision.model, size.tokens, warm, 0)
    ratios = history.drawn(prompt)
    low = high = None
    if ratios:
        low, high = (first + usual * (quantile(ratios, q) - 1) for q in (0.5, 0.9))
    return Estimate(
        tier=decision.tier,
        model=decision.model,
        input_tokens=size.tokens,
        token_source=size.source,
        first_call_usd=first,
        first_call_held_usd=plan.reservation.worst_case_usd if plan is not None else None,
        p50_usd=low,
        p90_usd=high,
        drawn_from=len(ratios),
    )
