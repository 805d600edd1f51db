"""The conversation as the agent sends it, kept within the window and paid for only while it
serves.

`RunState` is the run's state (its history and counters); `Conversation` builds each
request from the history, the system prompt and the tools. What a request adds to the
history is the request's (agent/loop.py, Request). Long sessions keep the context in bounds
(`ContextManager`), in two steps, both on by default (config `context_management`), each a
`context` record:

- **Clearing old tool results.** A tool result older than the last `context_keep_turns`
  model calls has served: the model read it and answered. One smaller than
  `context_clear_min_tokens` stays whole: clearing it saves little on each call, and a
  question about it later costs a whole call to recall it. It is replaced by a one-line
  header naming the call, its size and its `rN` id; the original stays with the Compressor,
  so `expand_result(result_id="rN")` brings it back. An edit changes the prompt from the
  first cleared block on, so the next call writes that tail to the cache again instead of
  reading it. Clearing is done in batches, only when it pays back within `PAYBACK_CALLS`
  calls: `cleared * read * PAYBACK_CALLS >= rewritten * (write - read)`, with the rates of
  the model that holds the cache (see docs/context.md). With no warm cache (cache off, expired,
  or never written) nothing is rewritten at a premium, so any clearing pays.
- **Compaction.** When the request nears the window (`compact_at`, 0.8 of it by default),
  or earlier when it pays, the conversation before the current request is summarised by a
  helper call on the fast tier (priced, within the cap, its own `turn` record with purpose
  `compact`), and the session goes on from the summary. The current request's own
  messages stay as they are. It pays when the tokens it removes, read on each of the next
  `COMPACT_PAYBACK_CALLS` calls, cost more than the summary call (its input at the fast
  tier's input rate, its output at the output rate) plus writing the rest again.

The agent calls `before_call` before every agent call, so a request is never sent over
the window: when even a compacted request would not fit, the run halts with
`halt_reason: "context"` instead of getting the API's 400.

And while the user is idle, **keep-warm** refreshes the cache just before it expires when
that costs less than the miss it prevents (`keep_warm`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tuiagent.agent.call import Caller, Place, Retries
from tuiagent.agent.compress import Compressor
from tuiagent.agent.events import ContextEdited, EventStream, Notice, Steps
from tuiagent.agent.tools import Toolbox
from tuiagent.config import TIERS, Settings
from tuiagent.cost.display import cap, money
from tuiagent.cost.pricing import Pricer
from tuiagent.llm.markers import COMPACT_MARKER, SUMMARY_MARKER
from tuiagent.llm.models import context_window
from tuiagent.llm.tokens import (
    TTL_SECONDS,
    CacheTracker,
    block_tokens,
    estimate_request_tokens,
    plan_breakpoints,
)
from tuiagent.runs.records import ContextEdit, HaltReason, KeepWarm


@dataclass
class RunState:
    """One agent's run so far: its calls, how it ended, its conversation's messages."""

    run_id: str
    turns: int = 0
    subagent_turns: int = 0  # the turns of its sub-agents (agent/delegate.py), all told
    status: str | None = None
    halt_reason: HaltReason | None = None
    # Halted at the cap: the most the next call may cost (what raising the cap must leave).
    needed_usd: Decimal | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SettledEnd:
    """The end of the history's settled part: the last message a clearing edited
    (agent/context.py). Calls hold a cache breakpoint there, so the next clearing (which
    edits only what follows) rewrites the cache from there on, not from the start.
    `cached_at`: when a call first wrote that prefix to the cache (None: not yet), and on
    which model."""

    message: int
    after_turn: int  # the calls after this turn place the breakpoint
    cached_at: float | None = None
    model: str | None = None


def asks_diagnostics(simulated: bool) -> bool:
    """Diagnostics are asked of Anthropic's API and of the offline model; a gateway or other
    compatible endpoint may reject the field, so it is not sent there."""
    return simulated or not os.environ.get("ANTHROPIC_BASE_URL")


# The tools and messages as sent, from the toolbox's definitions and the history.
Offer = Callable[
    [list[dict[str, Any]], list[dict[str, Any]]],
    tuple[list[dict[str, Any]], list[dict[str, Any]]],
]


class Conversation:
    """The requests an agent's conversation makes: the history (`state.history`, replaced
    whole by a compaction or /clear), the system prompt and the tools' definitions."""

    def __init__(
        self,
        state: RunState,
        settings: Settings,
        system_prompt: str,
        toolbox: Toolbox,
        cache: CacheTracker,
        *,
        simulated: bool,
    ) -> None:
        self.state = state
        self.settings = settings
        self.system_prompt = system_prompt
        self.toolbox = toolbox
        self.cache = cache  # the calls' prompt cache: its last message id
        self.ask_diagnostics = asks_diagnostics(simulated)
        # The settled ends whose breakpoints the next call holds: the one cached, and a new
        # one after a clearing until a call has cached it too (context.py keeps them).
        self.settled: list[SettledEnd] = []
        # What the MCP servers make of the tools and messages sent (agent/mcp.py `offered`:
        # their definitions deferred to tool search, when they are), if there are any.
        self.offer: Offer | None = None

    def held(self) -> list[int]:
        """The message indices whose last blocks hold a cache breakpoint."""
        return [s.message for s in self.settled]

    def body(self) -> dict[str, Any]:
        """What every request of the conversation sends: system, tools, messages."""
        tools, messages = self.toolbox.definitions(), self.state.history
        if self.offer is not None:
            tools, messages = self.offer(tools, messages)
        return {"system": self.system_prompt, "tools": tools, "messages": messages}

    def request(self, model: str) -> dict[str, Any]:
        """The next agent call's request to `model`, with its cache breakpoints."""
        settings = self.settings
        request: dict[str, Any] = {
            "model": model,
            "max_tokens": settings.run.max_tokens,
            **self.body(),
        }
        if not settings.cache.enabled:
            return request
        if self.ask_diagnostics:
            # Ask the API why a call missed the cache: it compares with this previous call.
            request["diagnostics"] = {"previous_message_id": self.cache.last_message_id}
        return plan_breakpoints(request, model, settings.cache.ttl, self.held())


def replayable(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Assistant content as it can be sent back: the API's own block fields only."""
    out = []
    for block in content:
        kind = block.get("type")
        if kind == "text":
            out.append({"type": "text", "text": block.get("text", "")})
        elif kind == "tool_use":
            out.append(
                {
                    "type": "tool_use",
                    "id": block["id"],
                    "name": block["name"],
                    "input": block.get("input") or {},
                }
            )
        else:
            out.append({k: v for k, v in block.items() if k not in ("citations",)})
    return [b for b in out if not (b.get("type") == "text" and not b.get("text"))] or [
        {"type": "text", "text": "(no answer)"}
    ]


# A clearing must pay for its cache rewrite within this many calls, a compaction for its
# summary call and rewrite within COMPACT_PAYBACK_CALLS (see the module doc).
PAYBACK_CALLS = 10
COMPACT_PAYBACK_CALLS = 30
# What a compaction's notice says of why it happened (the record has the whole reason).
_TRIGGERS = {
    "window": "the context neared the window",
    "saving": "a large history: the summary saves more than it costs",
    "asked": "asked for",
}
COMPACT_SYSTEM = (
    f"{COMPACT_MARKER} You summarise a conversation between a user and an assistant that "
    "works in the user's files, so that the assistant can go on from your summary alone. "
    "Keep what the user asked and what was found, and every result line `[rN: ...]` as it "
    "is: the assistant gets a result back with expand_result(result_id). Plain text, no "
    "preamble, as short as the facts allow."
)
COMPACT_MAX_TOKENS = 4096
CLEARED = "cleared from context"
# Keep-warm acts in the last minute of a cache entry's life, with a one-token question.
KEEP_WARM_WINDOW_S = 60.0
KEEP_WARM_PING = "(keep-alive: no answer needed)"
_RESULT_ID = re.compile(r"^\[(r\d+)[: ]")
_ARG_KEYS = ("path", "pattern", "command", "url", "result_id")
_CLIP = 600  # characters of one message a compaction's input keeps


@dataclass(frozen=True)
class _Clearing:
    """Which results a clearing would replace, and what it would save and rewrite."""

    edits: list[tuple[int, int, str]]  # (message index, block index, the result's text)
    cleared_tokens: int
    rewritten_tokens: int  # the prompt from the first edit on, after it: written again
    first_message: int


class ContextManager:
    """Keeps one agent's conversation within its window and its cost (see the module doc)."""

    def __init__(
        self,
        settings: Settings,
        state: RunState,
        conversation: Conversation,
        caller: Caller,
        pricer: Pricer,
        compressor: Compressor,
        place: Place,
    ) -> None:
        self.settings = settings
        self.state = state  # its history is what is cleared and compacted
        self.conversation = conversation  # its settled ends hold cache breakpoints
        self.caller = caller  # the summary call; the prompt cache and the clock
        self.pricer = pricer
        self.compressor = compressor
        self.place = place
        # The settings are the run's and never change: what follows from them is known now.
        self.fast_model = settings.router.model_for("fast")  # compaction's tier
        # The smallest window among the tiers' models (a call may go to any of them),
        # within config `context_window`.
        self._window = min(
            context_window(settings.router.model_for(t), settings.run.context_window) for t in TIERS
        )

    def _note_calls(self) -> None:
        """A call made since a clearing has cached its settled end: the one before is let go."""
        cache, turns, settled = self.caller.cache, self.state.turns, self.conversation.settled
        for s in settled:
            if s.cached_at is None and turns > s.after_turn and cache.last_model is not None:
                s.model = cache.last_model
                s.cached_at = cache.models[cache.last_model].last_write_at
        cached = [s for s in settled if s.cached_at is not None]
        if cached:
            settled[:] = [s for s in settled if s.cached_at is None or s is cached[-1]]

    def _rewrite_from(self) -> int:
        """Where a clearing's rewrite of the cache starts: after the settled end a live cache
        entry holds (same model, within its lifetime), else the first message."""
        cache, now = self.caller.cache, self.caller.wall_clock()
        for s in reversed(self.conversation.settled):
            if s.cached_at is None or s.model != cache.last_model or s.model is None:
                continue
            state = cache.models.get(s.model)
            ttl = TTL_SECONDS[state.ttl if state is not None else self.settings.cache.ttl]
            if now < s.cached_at + ttl:
                return s.message + 1
        return 0

    # --- sizes ---------------------------------------------------------------

    def window(self) -> int:
        """The smallest window among the tiers' models (a call may go to any of them),
        within config `context_window`."""
        return self._window

    def tokens(self) -> int:
        """The next request's input, as the local estimate counts it."""
        return estimate_request_tokens(self.conversation.body())

    # --- the hook before each agent call --------------------------------------

    def before_call(self, retries: Retries) -> EventStream[int]:
        """Before each agent call of a request (its `retries` for a compaction): clear what
        has served when that pays; compact near the window; never let a request over the
        window go out (the agent halts on `context` instead). Its result: the turn numbers
        its compaction took (they do not count against the request's max_turns)."""
        return EventStream(lambda out: self._before_call(out, retries))

    async def _before_call(self, out: EventStream[int], retries: Retries) -> Steps:
        self._note_calls()
        out.set_result(0)
        if self.settings.run.context_management:
            # Results of the request being worked on stay: the answer is made from them.
            history = self.state.history
            current = _current_request(history)
            clearing = self._plan_clearing(self.settings.run.context_keep_turns, current)
            if clearing is not None:
                why = self._pays(clearing)
                if why is not None:
                    yield self._apply_clearing(clearing, why)
            trigger = "window"
            if self.tokens() > self.settings.run.compact_at * self.window():
                why = (
                    f"the context neared the window ({self._fill()}, past "
                    f"{self.settings.run.compact_at:.0%} of it)"
                )
            else:
                trigger, why = "saving", self._compaction_pays(current)
            if why is not None:
                compaction = self.compact(why, retries, working=True, trigger=trigger)
                yield compaction
                out.set_result(compaction.result())
        if self.tokens() > self.window() and self.settings.run.context_management:
            # The current request alone is too large: clear all but its last results.
            clearing = self._plan_clearing(1, len(self.state.history))
            if clearing is not None:
                yield self._apply_clearing(clearing, "the request would be over the window")

    def over_window(self) -> str | None:
        """Why the next request cannot be sent, or None when it fits the window."""
        tokens, window = self.tokens(), self.window()
        if tokens <= window:
            return None
        return (
            f"the request would hold {tokens:,} tokens, over the {window:,}-token context "
            "window; /clear starts a new conversation"
        )

    def _fill(self) -> str:
        return f"{self.tokens():,} of {self.window():,} tokens"

    # --- clearing ------------------------------------------------------------

    def _plan_clearing(self, keep_turns: int, before: int) -> _Clearing | None:
        """Every tool result older than the last `keep_turns` calls, in the messages before
        index `before`, and not yet cleared."""
        history = self.state.history
        result_messages = [
            i
            for i, m in enumerate(history[:before])
            if m.get("role") == "user"
            and isinstance(m.get("content"), list)
            and any(b.get("type") == "tool_result" for b in m["content"])
        ]
        old = result_messages[: max(0, len(result_messages) - keep_turns)]
        uses = _tool_uses(history)
        edits, cleared = [], 0
        for mi in old:
            for bi, block in enumerate(history[mi]["content"]):
                if block.get("type") != "tool_result":
                    continue
                text = _text_of(block)
                if CLEARED in text.partition("\n")[0]:
                    continue
                if block_tokens(block) < self.settings.run.context_clear_min_tokens:
                    continue  # small: kept whole, a recall would cost a whole call
                header = self._header(uses.get(block.get("tool_use_id", "")), text, keep=False)
                saved = block_tokens(block) - block_tokens({**block, "content": header})
                if saved > 0:
                    edits.append((mi, bi, text))
                    cleared += saved
        if not edits:
            return None
        first = edits[0][0]
        # What the next call writes to the cache again: the prompt from the last cached
        # breakpoint before the first edit (the settled end, if one is held) on.
        start = min(first, self._rewrite_from())
        rewritten = estimate_request_tokens({"messages": history[start:]}) - cleared
        return _Clearing(edits, cleared, max(0, rewritten), first)

    def _pays(self, clearing: _Clearing) -> str | None:
        """Why this clearing pays now, or None when it does not (yet)."""
        cache = self.caller.cache
        model = cache.last_model
        state = cache.models.get(model) if model is not None else None
        now = self.caller.wall_clock()
        warm = (
            self.settings.cache.enabled
            and state is not None
            and state.expires_at is not None
            and now < state.expires_at
        )
        if not warm or model is None:
            return "no warm cache: nothing is written again at a premium"
        rates = self.pricer.rates(model)
        saved = rates.cache_read * clearing.cleared_tokens * PAYBACK_CALLS
        rewrite = (rates.cache_write_5m - rates.cache_read) * clearing.rewritten_tokens
        if saved < rewrite:
            return None
        return (
            f"reading {clearing.cleared_tokens:,} fewer tokens for {PAYBACK_CALLS} calls "
            f"saves ${saved:.5f}, more than writing {clearing.rewritten_tokens:,} again costs "
            f"(${rewrite:.5f})"
        )

    def _compaction_pays(self, start: int) -> str | None:
        """Why compacting the messages before `start` pays now, or None (see the doc): the
        history is large (`compact_early_at` of the window), the saving on each later call
        is material (`compact_min_saving_usd`), and it pays back within
        COMPACT_PAYBACK_CALLS calls."""
        run, history = self.settings.run, self.state.history
        head = history[:start]
        if not head or (len(head) == 1 and _is_summary(head[0])):
            return None
        head_tokens = estimate_request_tokens({"messages": head})
        window = self.window()
        if head_tokens < run.compact_early_at * window:
            return None
        summaries = sum(block_tokens(m["content"][0]) for m in head if _is_summary(m))
        expected = summaries + (head_tokens - summaries) // 10  # the new summary, guessed
        if expected >= head_tokens:
            return None
        last = self.caller.cache.last_model
        rates = self.pricer.rates(last or self.fast_model)
        per_call = rates.cache_read * (head_tokens - expected)
        if per_call < run.compact_min_saving_usd:
            return None
        tail = estimate_request_tokens({"messages": history[start:]})
        rendered = estimate_request_tokens(
            {"messages": [{"role": "user", "content": self._render(head, keep=False)}]}
        )
        fast = self.pricer.rates(self.fast_model)
        cost = (
            fast.input * rendered
            + fast.output * expected
            + (rates.cache_write_5m - rates.cache_read) * (expected + tail)
        )
        if per_call * COMPACT_PAYBACK_CALLS < cost:
            return None
        return (
            f"the history holds {head_tokens:,} tokens (at least {run.compact_early_at:.0%} of "
            f"the {window:,}-token window) and a summary saves {money(per_call)} on each later "
            f"call (at least {cap(run.compact_min_saving_usd)}), paying for itself "
            f"({money(cost)}) within {COMPACT_PAYBACK_CALLS} calls"
        )

    def _apply_clearing(self, clearing: _Clearing, reason: str) -> ContextEdited:
        history, transcript = self.state.history, self.place.transcript
        transcript.messages(history)  # as they were, before the edit
        before = self.tokens()
        uses = _tool_uses(history)
        ids = []
        for mi, bi, text in clearing.edits:
            message = history[mi] = {**history[mi], "content": list(history[mi]["content"])}
            block = message["content"][bi]
            header = self._header(uses.get(block.get("tool_use_id", "")), text, keep=True)
            ids.append(header[1 : header.index(":")])
            message["content"][bi] = {**block, "content": header}
        transcript.rewrite(history, clearing.first_message)
        settled = SettledEnd(clearing.edits[-1][0], self.state.turns)
        self.conversation.settled.append(settled)
        model = self.caller.cache.last_model or self.fast_model
        rates = self.pricer.rates(model)
        record = self.place.write(
            ContextEdit(
                action="clear_tool_results",
                turn=self.state.turns,
                results=len(clearing.edits),
                result_ids=ids,
                tokens_before=before,
                tokens_after=self.tokens(),
                cleared_tokens=clearing.cleared_tokens,
                rewritten_tokens=clearing.rewritten_tokens,
                saved_per_call_usd=rates.cache_read * clearing.cleared_tokens,
                rewrite_cost_usd=(rates.cache_write_5m - rates.cache_read)
                * clearing.rewritten_tokens,
                reason=reason,
            )
        )
        return ContextEdited(record)

    def _header(self, use: dict[str, Any] | None, text: str, *, keep: bool) -> str:
        """A result's one-line stand-in: the call, its size, its id for expand_result. With
        `keep`, a result not yet kept (one that was not compressed) is kept now."""
        name = (use or {}).get("name", "tool")
        args = (use or {}).get("input") or {}
        arg = next((str(args[k]) for k in _ARG_KEYS if args.get(k)), "")
        first = text.partition("\n")[0]
        m = _RESULT_ID.match(first)
        rid = m.group(1) if m else None
        lines = self.compressor.line_count(rid) if rid else None
        if rid is None or lines is None:
            rid, lines = self.compressor.keep(text) if keep else ("r?", len(text.splitlines()))
        tokens = block_tokens({"type": "text", "text": text})
        what = " ".join(filter(None, (name, arg)))
        gist = _gist(text)
        return (
            f"[{rid}: {what} result, {tokens:,} tokens, {lines:,} lines, {CLEARED}"
            + (f"; it began: {gist}" if gist else "")
            + f'; expand_result(result_id="{rid}") returns it]'
        )

    # --- compaction and /clear -------------------------------------------------

    def compact(
        self, why: str, retries: Retries, *, working: bool, trigger: str = "asked"
    ) -> EventStream[int]:
        """Summarise the conversation before the current request (all of it when idle, not
        `working` on one) by a fast-tier helper call, and go on from the summary. `trigger`
        (window, saving, asked) and `why` go into the record and onto the screen. The call
        has a turn number of its own (the result: the turn numbers it took, 0 or 1); it does
        not count against the request's max_turns."""
        return EventStream(lambda out: self._compact(out, why, retries, working, trigger))

    async def _compact(
        self, out: EventStream[int], why: str, retries: Retries, working: bool, trigger: str
    ) -> Steps:
        out.set_result(0)
        state = self.state
        history = state.history
        start = _current_request(history) if working else len(history)
        head = history[:start]
        if not head or (len(head) == 1 and _is_summary(head[0])):
            yield Notice("nothing to compact: the conversation is only the current request")
            return
        before = self.tokens()
        model = self.fast_model
        request = {
            "model": model,
            "max_tokens": min(COMPACT_MAX_TOKENS, self.settings.run.max_tokens),
            "system": COMPACT_SYSTEM,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": self._render(head, keep=True)}],
                }
            ],
        }
        yield Notice(f"compacting the conversation: {why}")
        turn = state.turns + 1
        call = self.caller.helper("compact", request, turn, retries)
        try:
            yield call
        finally:
            if call.recorded:  # the number is taken: the next agent call has the one after
                state.turns = turn
                out.set_result(1)
        end = call.result()
        result = end.result
        if result is None:
            yield Notice(f"could not compact the conversation ({end.detail})", "warning")
            return
        summary = result.text.strip() or "(the summary came back empty)"
        cost = self.pricer.price(result.model or model, result.usage).total
        text = f"{SUMMARY_MARKER} Summary of the conversation so far:\n{summary}"
        transcript = self.place.transcript
        transcript.messages(history)  # as they were, before the edit
        state.history = [{"role": "user", "content": [{"type": "text", "text": text}]}]
        state.history += history[start:]
        transcript.rewrite(state.history, 0)
        self.conversation.settled.clear()
        after = self.tokens()
        record = self.place.write(
            ContextEdit(
                action="compact",
                turn=state.turns,
                model=result.model or model,
                messages_before=len(history),
                messages_after=len(state.history),
                tokens_before=before,
                tokens_after=after,
                summary_tokens=result.usage.output_tokens,
                cost_usd=cost,
                reason=why,
                trigger=trigger,
            )
        )
        yield ContextEdited(record)
        yield Notice(
            f"compacted the conversation: {before:,} -> {after:,} tokens, summarised by "
            f"{result.model or model} for {money(cost)} ({_TRIGGERS.get(trigger, trigger)})"
        )

    def clear(self) -> ContextEdited:
        """/clear: a new conversation in the same session (the budget and the kept results
        carry on; the next request has no earlier messages)."""
        state, transcript = self.state, self.place.transcript
        before = self.tokens()
        messages = len(state.history)
        transcript.messages(state.history)  # as they were, before the edit
        state.history = []
        transcript.rewrite([], 0)
        self.conversation.settled.clear()
        record = self.place.write(
            ContextEdit(
                action="clear",
                turn=state.turns,
                messages_before=messages,
                messages_after=0,
                tokens_before=before,
                tokens_after=self.tokens(),
                reason="/clear: a new conversation",
            )
        )
        return ContextEdited(record)

    # --- keep-warm ---------------------------------------------------------------

    def keep_warm(self) -> EventStream[None]:
        """While the user is idle: refresh the conversation's cache just before it expires,
        when a refresh costs less than the miss it prevents and fits the budget. Each
        decision is logged (a `keep_warm` record) with its reason. Off unless
        `keep_warm = true`. A refresh is a request of its own (its own retries)."""
        return EventStream(self._keep_warm())

    async def _keep_warm(self) -> Steps:
        settings, cache, caller = self.settings, self.caller.cache, self.caller
        model = cache.last_model
        if not settings.cache.keep_warm or not settings.cache.enabled or model is None:
            return
        state = cache.models[model]
        now = caller.wall_clock()
        if state.expires_at is None or now >= state.expires_at:
            return  # nothing warm to keep
        left = state.expires_at - now
        if left > KEEP_WARM_WINDOW_S:
            return  # not close to expiry yet
        prefix = state.cached_prefix_tokens
        request = plan_breakpoints(
            {"model": model, "max_tokens": 1, **self.conversation.body()},
            model,
            settings.cache.ttl,
        )
        request["messages"] = [*request["messages"], {"role": "user", "content": KEEP_WARM_PING}]
        total = estimate_request_tokens(request)
        rates = self.pricer.rates(model, total)
        # A refresh reads the prefix and writes what was added since; a miss on the next
        # turn writes the whole prefix again instead of reading it.
        refresh = (
            rates.cache_read * prefix + rates.cache_write_5m * max(0, total - prefix) + rates.output
        )
        miss = (rates.cache_write_5m - rates.cache_read) * prefix
        if refresh >= miss:
            action, reason = "skip", "a refresh would cost more than the miss it prevents"
        elif refresh > caller.budget.remaining:
            action, reason = "skip", "a refresh does not fit what is left of the cap"
        else:
            action, reason = "refresh", "a refresh costs less than a miss on the next turn"
        self.place.write(
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
        retries = Retries(settings.run.max_retries)
        yield caller.helper("keep_warm", request, self.state.turns, retries, why)

    def _render(self, messages: list[dict[str, Any]], *, keep: bool) -> str:
        """The conversation as plain text for the summariser; results as their headers."""
        uses = _tool_uses(messages)
        out = []
        for message in messages:
            role = "User" if message.get("role") == "user" else "Assistant"
            content = message.get("content")
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
            for block in blocks or []:
                kind = block.get("type")
                if kind == "text" and block.get("text", "").startswith(SUMMARY_MARKER):
                    summary = block["text"].partition("\n")[2]
                    out.append(f"Earlier summary:\n{summary}")
                elif kind == "text" and block.get("text"):
                    out.append(f"{role}: {_clip(block['text'])}")
                elif kind == "tool_use":
                    out.append(
                        f"Assistant called {block.get('name')} {json.dumps(block.get('input'))}"
                    )
                elif kind == "tool_result":
                    text = _text_of(block)
                    if CLEARED not in text.partition("\n")[0]:
                        use = uses.get(block.get("tool_use_id", ""))
                        text = self._header(use, text, keep=keep)
                    out.append(f"Result: {text.partition(chr(10))[0]}")
        return "\n".join(out)


def _tool_uses(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for message in messages:
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            if block.get("type") == "tool_use":
                out[block.get("id", "")] = block
    return out


def _text_of(block: dict[str, Any]) -> str:
    content = block.get("content", "")
    if isinstance(content, list):
        return "".join(c.get("text", "") for c in content if isinstance(c, dict))
    return str(content)


def _gist(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("["):
            return _clip(line, 80)
    return ""


def _clip(text: str, width: int = _CLIP) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _is_summary(message: dict[str, Any]) -> bool:
    content = message.get("content")
    return (
        isinstance(content, list)
        and len(content) == 1
        and str(content[0].get("text", "")).startswith(SUMMARY_MARKER)
    )


def _current_request(history: list[dict[str, Any]]) -> int:
    """Where the request being worked on starts: the last user message with text."""
    for i in range(len(history) - 1, -1, -1):
        m = history[i]
        content = m.get("content")
        if m.get("role") != "user" or _is_summary(m):
            continue
        if isinstance(content, str) or any(b.get("type") == "text" for b in content or []):
            return i
    return 0
