"""Calls the agent makes for itself, not for the conversation: the classifier, summaries of
large tool results, keep-warm. Each goes through the one metered call (agent/call.py) and
yields its own events; the last item is its outcome."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from tuiagent.agent.call import CallEnd, CallSpec
from tuiagent.agent.events import Event, Notice
from tuiagent.agent.router import CLASSIFIER_PROMPT, RouteDecision, tier_named
from tuiagent.llm.caching import plan_breakpoints
from tuiagent.llm.tokens import estimate_request_tokens
from tuiagent.runs.records import KeepWarm

if TYPE_CHECKING:
    from tuiagent.agent.loop import Agent

# Keep-warm acts in the last minute of a cache entry's life, with a one-token question.
KEEP_WARM_WINDOW_S = 60.0
KEEP_WARM_PING = "(keep-alive: no answer needed)"


async def helper_call(
    agent: Agent, purpose: str, request: dict[str, Any], reason: str = "", turn: int | None = None
) -> AsyncGenerator[Event | CallEnd, None]:
    """One helper call on its model's tier, reserved, retried and logged like every call
    (its own `turn` record with its `purpose`; its number is the agent turn it serves unless
    `turn` gives it one). Ends with its CallEnd ("skipped" when it did not fit or failed)."""
    model = request["model"]
    tier = agent.settings.router.tier_of(model) or "fast"
    why = reason or f"{purpose}: helper call on the {tier} tier"
    if turn is None:
        turn = agent.state.turns + (1 if purpose == "classify" else 0)
    spec = CallSpec(
        turn,
        purpose,
        RouteDecision(tier, model, why),
        lambda chosen: {**request, "model": chosen},
    )
    async with aclosing(agent.call(spec)) as items:
        async for item in items:
            yield item


async def classify(agent: Agent, prompt: str) -> AsyncGenerator[Event, None]:
    """The optional classifier (config router_classifier): one fast-tier call naming the
    tier this request needs. Sets agent.classified; when it fails or names no tier, the
    rules decide. Asked only when routing is automatic and the cap leaves room."""
    if not agent.settings.router.classifier or agent.tier != "auto" or agent.budget.remaining <= 0:
        return
    agent.classified = ""
    decision = agent.router.choose(
        prompt=prompt,
        input_tokens=0,
        cache=agent.cache,
        now=agent.wall_clock(),
        pin=agent.tier,
        purpose="classify",
    )
    request = {
        "model": decision.model,
        "max_tokens": 5,
        "system": CLASSIFIER_PROMPT,
        "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
    }
    async with aclosing(helper_call(agent, "classify", request, decision.reason)) as items:
        async for item in items:
            if isinstance(item, CallEnd):
                if item.result is not None:
                    agent.classified = tier_named(item.result.text)
            else:
                yield item


async def keep_warm(agent: Agent) -> AsyncGenerator[Event, None]:
    """While the user is idle: refresh the conversation's cache just before it expires,
    when a refresh costs less than the miss it prevents and fits the budget. Each decision
    is logged (a `keep_warm` record) with its reason. Off unless `keep_warm = true`."""
    settings, cache = agent.settings, agent.cache
    model = cache.last_model
    if not settings.cache.keep_warm or not settings.cache.enabled or model is None:
        return
    state = cache.models[model]
    now = agent.wall_clock()
    if state.expires_at is None or now >= state.expires_at:
        return  # nothing warm to keep
    left = state.expires_at - now
    if left > KEEP_WARM_WINDOW_S:
        return  # not close to expiry yet
    prefix = state.cached_prefix_tokens
    request = plan_breakpoints(
        {"model": model, "max_tokens": 1, **agent.request_body()}, model, settings.cache.ttl
    )
    request["messages"] = [*request["messages"], {"role": "user", "content": KEEP_WARM_PING}]
    total = estimate_request_tokens(request)
    rates = agent.pricer.rates(model, total)
    # A refresh reads the prefix and writes what was added since; a miss on the next turn
    # writes the whole prefix again instead of reading it.
    refresh = (
        rates.cache_read * prefix + rates.cache_write_5m * max(0, total - prefix) + rates.output
    )
    miss = (rates.cache_write_5m - rates.cache_read) * prefix
    if refresh >= miss:
        action, reason = "skip", "a refresh would cost more than the miss it prevents"
    elif refresh > agent.budget.remaining:
        action, reason = "skip", "a refresh does not fit what is left of the cap"
    else:
        action, reason = "refresh", "a refresh costs less than a miss on the next turn"
    agent.write(
        KeepWarm(
            model=model,
            cached_prefix_tokens=prefix,
            expires_in_s=round(left, 1),
            refresh_cost_usd=refresh,
            miss_cost_usd=miss,
            action=action,
            reason=reason,
        )
    )
    yield Notice(f"keep-warm on {model}: {action} ({reason})")
    if action != "refresh":
        return
    why = "keep-warm: refresh the cache before it expires"
    async with aclosing(helper_call(agent, "keep_warm", request, why)) as items:
        async for item in items:
            if not isinstance(item, CallEnd):
                yield item
