"""Replay one logged turn on another model: the exact request, resent, priced and logged.

The replay is a run of its own (run_start notes `replay_of`), so reports show what it cost
beside the original.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from tuiagent.agent.call import CallSpec
from tuiagent.agent.loop import Agent
from tuiagent.agent.router import RouteDecision
from tuiagent.agent.tools import Toolbox
from tuiagent.config import Settings
from tuiagent.cost.pricing import Pricer
from tuiagent.errors import UsageError
from tuiagent.llm.provider import ModelConnection
from tuiagent.llm.tokens import TokenUsage
from tuiagent.runs.outcome import outcome
from tuiagent.runs.records import HaltReason, Turn
from tuiagent.runs.transcript import TurnRequest, turn_request


@dataclass
class Side:
    """One answer of the comparison: which model, what it said, what it cost."""

    model: str
    tier: str
    content: list[dict[str, Any]] | None  # None: not known (not kept in the transcript)
    usage: TokenUsage
    cost: Decimal
    stop_reason: str | None


@dataclass
class Replay:
    original: Side
    replay: Side
    # The replay priced as if its cache had been as warm as the original's (a model's cache
    # starts cold, so a one-off replay pays writes where the original read).
    warm_cache_cost: Decimal | None
    source: TurnRequest
    run_id: str
    log_path: Path
    error: str | None
    notice: str | None
    simulated: bool


async def replay_turn(
    settings: Settings,
    log_dir: Path,
    run_id: str,
    turn: int,
    *,
    tier: str | None = None,
    model: str | None = None,
    connect: Callable[[], ModelConnection],
) -> Replay:
    """Resend turn `turn` of run `run_id` to the target, through the connection `connect`
    makes (the real API or the offline model: the caller decides)."""
    if (tier is None) == (model is None):
        raise UsageError("replay needs one of --tier or --model")
    target = model or settings.router.model_for(str(tier))
    target_tier = tier or settings.router.tier_of(target) or "custom"
    pricer = Pricer(settings.router.prices)
    pricer.ensure_priced(target)  # before anything is sent or logged
    source = turn_request(log_dir, run_id, turn)
    rec = source.record
    original = Side(
        model=rec.model or "?",
        tier=(rec.tier if isinstance(rec, Turn) else rec.source) or "?",
        content=source.answer,
        usage=rec.usage,
        cost=rec.cost_usd,
        stop_reason=rec.stop_reason,
    )
    conn = connect()
    agent = Agent(settings, provider=conn.provider, toolbox=Toolbox(), log_dir=log_dir)
    # The replay is pinned to its target: the budget may clamp max_tokens, never the model.
    agent.steering.tier = target_tier
    agent.start(replay_of={"run_id": source.run.run_id, "turn": turn, "model": original.model})
    request = copy.deepcopy(source.request)
    request["model"] = target
    reason = f"replay of {source.run.run_id} turn {turn}"
    decision = RouteDecision(target_tier, target, reason)

    def build(_model: str) -> dict[str, Any]:
        return copy.deepcopy(request)

    call = agent.call(CallSpec(1, "agent", decision, build, conversation=True))
    async for _ in call:
        pass
    end = call.result()
    result, record, error = end.result, end.record, None
    if result is None:
        if end.reason not in (None, "skipped"):  # an agent call is never skipped
            agent.state.halt_reason = HaltReason(end.reason)
        error = end.detail
    if result is None or record is None:
        agent.finish(outcome(agent.state.halt_reason, answered=False))
        cost, usage, content, stop = agent.spending.spent, agent.spending.usage, None, None
    else:
        agent.state.history = [
            *request["messages"],
            {"role": "assistant", "content": result.content},
        ]
        agent.finish(outcome(None))
        cost, usage = record.cost_usd, result.usage
        content, stop = result.content, result.stop_reason
    warm = None
    if result is not None and original.usage.total_input_tokens:
        o = original.usage
        warm = pricer.price(
            target,
            TokenUsage(
                input_tokens=o.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_input_tokens=o.cache_read_input_tokens,
                cache_creation_input_tokens=o.cache_creation_input_tokens,
                cache_creation_5m_input_tokens=o.cache_creation_5m_input_tokens,
                cache_creation_1h_input_tokens=o.cache_creation_1h_input_tokens,
            ),
        ).total
    return Replay(
        original=original,
        replay=Side(target, target_tier, content, usage, cost, stop),
        warm_cache_cost=warm,
        source=source,
        run_id=agent.state.run_id,
        log_path=agent.log.path,
        error=error,
        notice=conn.notice,
        simulated=conn.provider.simulated,
    )
