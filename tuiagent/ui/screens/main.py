"""The main screen: chat and input on the left, the money panels around it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static

from tuiagent.ui.commands import key_hint
from tuiagent.ui.widgets.chat import ChatInput, ChatLog, NoticeView

# The money panels and the agent's events load after the first frame (mount_panels, apply):
# the first frame waits for neither.
if TYPE_CHECKING:
    from tuiagent.agent.events import Event
    from tuiagent.runs.records import ContextEdit, Tool, Turn
    from tuiagent.ui.widgets.agents import AgentsPanel
    from tuiagent.ui.widgets.answer import AnswerView
    from tuiagent.ui.widgets.gauge import BudgetGauge
    from tuiagent.ui.widgets.mcp import McpPanel


class KeysFooter(Footer):
    """Textual's footer, rebuilt once per refresh however many times the bindings change
    before it (on start they change several times, and each rebuild restyles every key)."""

    _rebuild_due = False

    def bindings_changed(self, screen: Screen[Any]) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus or self._rebuild_due:
            return
        if self.is_attached and screen is self.screen:
            self._rebuild_due = True
            self.call_after_refresh(self._rebuild)

    async def _rebuild(self) -> None:
        self._rebuild_due = False
        await self.recompose()


# How long streamed text may wait to be shown: text appears 15 times a second, and each
# time costs a layout pass, which typed keys would otherwise queue behind.
FRAME_SECONDS = 1 / 15


# Below this many columns the side panels give way to a one-line status, and F5 shows
# one panel at a time in place of the turns table.
NARROW_BELOW = 120
# What F5 cycles through: wide, the panels or the chat alone; narrow, one panel at a time.
WIDE_VIEWS = ("panels", "chat")
NARROW_VIEWS = ("panels", "router", "cache", "tools", "chat")


def welcome(key: Callable[[str], str]) -> str:
    """The first notice, naming the keys as the user has them (`key`: a command's key)."""
    return (
        "tuiagent: chat with an agent about the files here and see what every call costs; it "
        'never spends past the cap. Try "list the files" or "read README.md".\n'
        f"Enter sends · {key('cap_up')}/{key('cap_down')} cap up/down · {key('cycle_tier')} "
        f"tier · {key('toggle_panels')} panels · {key('report')} report · "
        f"{key('interrupt')} stops · {key('quit')} quits · /help\n"
        "Tool calls show as ▶ blocks: click one (or Tab to it, Enter) to see its exact output."
    )


class MainScreen(Screen[None]):
    # Its styles (main.tcss, beside this file) load with the app: a default screen's own
    # CSS_PATH is not read.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW_BELOW, "-wide")]  # noqa: RUF012
    VERTICAL_BREAKPOINTS = [(0, "-short"), (20, "-medium"), (36, "-tall")]  # noqa: RUF012

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        on_ready: Callable[[], None] | None = None,
        key: Callable[[str], str] = key_hint,
    ) -> None:
        super().__init__()
        self.key = key  # the key of a command (ui/commands.py), for the hints on screen
        self.on_ready = on_ready
        self.clock = clock
        self.answer: AnswerView | None = None
        self.ready = False  # the panels are mounted
        self._pending: list[str] = []  # answer text not yet on screen
        self._flush_due = False
        self._answer_lock = asyncio.Lock()
        self._failure: NoticeView | None = None  # the notice of a call failing right now
        self.needed_usd: Decimal | None = None  # halted at the cap: what the next call needs
        self.view = "panels"  # what F5 shows (WIDE_VIEWS, NARROW_VIEWS)
        self.last_turn: Turn | None = None  # for the one-line status
        self.queued = 0  # messages waiting for the agent (counted on the input's border)
        self._meter = ""  # the context meter, on the input's border when nothing is queued
        self._context_record: Turn | None = None  # the last agent turn's
        # The model's context window in tokens, when known (the app sets it from the pricer).
        self.context_window: Callable[[str], int | None] = lambda model: None

    def compose(self) -> ComposeResult:
        # The first frame holds what a user reads and types into; the money panels mount
        # right after it (mount_panels), so the frame never waits for them.
        with Horizontal(id="topbar"):
            yield Static("tuiagent", id="title")
            yield Static("", id="offline-badge")
            yield Static("tier auto", id="tier-label")
            yield Static("starting…", id="status")
        yield Static("no calls yet: model, cache hit and cost show here", id="statusline")
        with Horizontal(id="body"):
            with Vertical(id="chat-column"):
                yield ChatLog(id="chat")
                yield ChatInput(id="input")
            yield Vertical(id="side")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.chat.add_notice(welcome(self.key))
        self.set_class(True, "-view-panels")
        self.query_one(ChatInput).focus()
        # After the frame that shows the footer's keys (the footer fills in after a refresh).
        self.call_after_refresh(self.call_after_refresh, self.mount_panels)

    async def mount_panels(self) -> None:
        from tuiagent.ui.widgets.cache import CachePanel
        from tuiagent.ui.widgets.gauge import BudgetGauge
        from tuiagent.ui.widgets.router import RouterPanel
        from tuiagent.ui.widgets.tools import ToolResultsPanel
        from tuiagent.ui.widgets.turns import TurnsTable

        await self.mount(BudgetGauge(id="gauge"), after="#topbar")
        await self.query_one("#side").mount_all(
            [
                RouterPanel(id="router"),
                CachePanel(id="cache", clock=self.clock),
                ToolResultsPanel(id="tools"),
            ]
        )
        await self.mount(TurnsTable(id="turns"), before=self.query_one(Footer))
        self.ready = True
        if self.on_ready is not None:
            self.on_ready()

    def on_resize(self) -> None:
        narrow = self.size.width < NARROW_BELOW
        footer = self.query_one(KeysFooter)
        footer.compact = narrow  # the keys fit 80 columns
        footer.show_command_palette = not narrow
        views = NARROW_VIEWS if narrow else WIDE_VIEWS
        if self.view not in views:
            self.show_view("panels")

    def cycle_view(self) -> str:
        """F5: the next of what can be shown at this width."""
        views = NARROW_VIEWS if self.size.width < NARROW_BELOW else WIDE_VIEWS
        at = views.index(self.view) if self.view in views else -1
        self.show_view(views[(at + 1) % len(views)])
        return self.view

    def show_view(self, view: str) -> None:
        self.set_class(False, f"-view-{self.view}")
        self.view = view
        self.set_class(True, f"-view-{view}")

    def update_statusline(self) -> None:
        """The narrow layout's one line: model and tier, cache hit, last cost, context."""
        from tuiagent.ui.format import money
        from tuiagent.ui.widgets.agents import AgentsPanel
        from tuiagent.ui.widgets.cache import CachePanel

        r = self.last_turn
        if r is None:
            return
        parts = [f"{r.tier} {r.model.removeprefix('claude-')}"]
        for agents in self.query(AgentsPanel):  # second: it must not be cut off at 80 columns
            if n := agents.running:
                parts.append(f"{n} sub-agent{'' if n == 1 else 's'} running")
        for panel in self.query(CachePanel):
            parts.append(f"cache hit {panel.hit_rate}")
        parts.append(f"last {money(r.cost_usd, 5)}")
        window = self.context_window(r.model)
        used = r.usage.total_input_tokens + r.usage.output_tokens
        if window:
            parts.append(f"context {used / window:.0%}")
        parts.append(f"{self.key('toggle_panels')} panels")
        self.query_one("#statusline", Static).update(" · ".join(parts))

    # --- the panels, by name ----------------------------------------------------

    @property
    def chat(self) -> ChatLog:
        return self.query_one(ChatLog)

    @property
    def gauge(self) -> BudgetGauge:
        from tuiagent.ui.widgets.gauge import BudgetGauge

        return self.query_one(BudgetGauge)

    @property
    def input(self) -> ChatInput:
        return self.query_one(ChatInput)

    def set_offline(self, badge: str | None) -> None:
        """Show the badge (the offline model answers) or hide it."""
        self.query_one("#offline-badge", Static).update(badge or "")
        self.set_class(badge is not None, "-offline")

    def set_tier(self, tier: str) -> None:
        self.query_one("#tier-label", Static).update(f"tier {tier}")
        from tuiagent.ui.widgets.router import RouterPanel

        for panel in self.query(RouterPanel):  # none before the panels mount
            panel.tier = tier

    def set_status(self, text: str) -> None:
        self.query_one("#status", Static).update(text)

    # --- the input's border: the messages queued, else the context meter -------------

    def show_queue(self, n: int) -> None:
        """Waiting messages are counted under the input (a chat line would land in the
        middle of the answer streaming now)."""
        self.queued = n
        self.input.border_subtitle = (
            f"{n} queued: sent when the agent is free ({self.key('interrupt')} drops)"
            if n
            else self._meter
        )

    def show_context(self, record: Turn, tokens: int | None = None) -> None:
        """The context meter: how full the window is, and what reading the history cost on
        the last call (`tokens`: the context after an edit, with no call to price it)."""
        from tuiagent.ui.widgets.context import meter_text

        parts = record.cost_breakdown_usd
        input_cost = parts.input + parts.cache_write + parts.cache_read
        self._context_record = record
        shown = record.context_tokens if tokens is None else tokens
        self._meter = meter_text(
            shown, record.context_window, input_cost if tokens is None else None
        )
        self.show_queue(self.queued)

    def context_edited(self, record: ContextEdit) -> None:
        """Old tool results cleared, a compaction or /clear: said, and the meter follows."""
        if record.action == "clear_tool_results" and record.result_ids:
            self.chat.add_notice(cleared_notice(record))
        if self._context_record is not None:
            self.show_context(self._context_record, record.tokens_after)

    def interrupted(self, record: Turn | None) -> None:
        """Esc stopped the work: every sub-agent shows stopped, and the stopped call (if one
        was streaming) is a row in the panels."""
        from tuiagent.ui.widgets.agents import AgentsPanel

        for panel in self.query(AgentsPanel):
            panel.stopped()
        if record is not None:
            self.turn_finished(record)

    # --- agent events ------------------------------------------------------------

    async def apply(self, event: Event) -> None:
        """Show one agent event. Called by the app's agent worker for each event."""
        from tuiagent.agent.events import (
            AnswerDelta,
            AttemptFailed,
            BudgetChanged,
            CacheStateChanged,
            Halted,
            LogRecord,
            Notice,
            SubAgentChanged,
            ToolCallStarted,
            ToolFinished,
            TurnFinished,
            TurnStarted,
        )
        from tuiagent.runs.records import HaltReason, McpCost, McpServerState
        from tuiagent.ui.widgets.cache import CachePanel
        from tuiagent.ui.widgets.mcp import McpPanel
        from tuiagent.ui.widgets.router import RouterPanel
        from tuiagent.ui.widgets.turns import TurnsTable

        if isinstance(event, LogRecord) and isinstance(event.record, McpServerState | McpCost):
            (await self.mcp_panel()).post_message(McpPanel.Seen(event.record))
            return
        if isinstance(event, SubAgentChanged):
            (await self.agents_panel()).update_agent(event)
            self.update_statusline()  # the narrow layout says how many are running
            return
        if isinstance(event, LogRecord) and event.record.agent not in (None, "main"):
            # A sub-agent's record: its calls join the turns table and the gauge's burn; the
            # chat, router and cache panels are the orchestrator's.
            if isinstance(event, TurnFinished | AttemptFailed):
                self.query_one(TurnsTable).add_turn(event.record)
            if isinstance(event, TurnFinished):
                self.gauge.add_turn_cost(event.record.cost_usd)
            return
        if isinstance(event, AnswerDelta):
            self.feed(event.text)
        elif isinstance(event, TurnStarted):
            if event.attempt > 1:
                await self.discard_answer()  # the failed attempt's partial text gives way
            await self.close_answer()
            self.query_one(RouterPanel).routed(
                event.tier, event.model, event.route_reason, event.turn
            )
            self.set_status(f"turn {event.turn}: {event.model}…")
        elif isinstance(event, ToolCallStarted):
            await self.close_answer()
            if event.arguments or event.tool_use_id not in self.chat.tool_views:
                view = self.chat.tool_views.get(event.tool_use_id)
                if view is None:
                    self.chat.add_tool(event.tool_use_id, event.name, event.arguments)
                else:
                    view.set_arguments(event.arguments)
        elif isinstance(event, ToolFinished):
            self.tool_finished(event.record, event.output, event.original)
        elif isinstance(event, TurnFinished):
            await self.close_answer()
            self._failure = None  # a retry went through: the next failure is a new one
            self.turn_finished(event.record)
            self.gauge.add_turn_cost(event.record.cost_usd)
        elif isinstance(event, BudgetChanged):
            self.gauge.show(event.budget)
        elif isinstance(event, CacheStateChanged):
            self.query_one(CachePanel).set_state(event)
        elif isinstance(event, AttemptFailed):
            # A failed call is a row in the table and one notice line, updated in place
            # while it is retried (not a line and a toast per attempt).
            self.query_one(TurnsTable).add_turn(event.record)
            r = event.record
            self.failure_notice(
                f"{r.error}: retry {r.retries_used + 1} in {r.retry_in_s:.1f}s"
                if r.retry_in_s is not None
                else r.error,
                "warning",
            )
        elif isinstance(event, Halted):
            await self.close_answer()
            text = f"halted: {event.detail}"
            if event.withdrawn:
                text += "; nothing was sent, your message is back in the input"
                if not self.input.text.strip():
                    self.input.load_text(event.withdrawn)
                    self.input.move_cursor(self.input.document.end)
            if event.reason == HaltReason.MAX_COST:
                self.needed_usd = event.needed_usd
                text += f". Raise the cap ({self.key('cap_up')} or /budget) to go on."
                self.gauge.halted = f"{self.key('cap_up')} or /budget to go on"
            elif event.reason == HaltReason.MAX_TURNS:
                self.gauge.halted = f"max_turns: {self.key('go_on')} or /turns N goes on"
            else:
                self.gauge.halted = event.reason
            self.failure_notice(text, "error")
            self._failure = None
            self.app.notify(event.detail, title="Halted", severity="error")
        elif isinstance(event, Notice):
            if self._failure is not None and event.level == "warning":
                return  # the retry notice: the failure's line already says it
            if event.level == "error":
                self.failure_notice(event.text, "error")
                self._failure = None
                self.app.notify(event.text, title="Error", severity="error")
            else:
                self.chat.add_notice(event.text, event.level)

    def failure_notice(self, text: str, level: str) -> None:
        """The one notice line of a failing call: made once, then updated in place."""
        if self._failure is None or not self._failure.is_attached:
            self._failure = self.chat.add_notice(text, level)
        else:
            self._failure.update(text)
            self._failure.set_classes(f"-{level}")

    async def discard_answer(self) -> None:
        """Drop the answer streaming now (a failed attempt's partial text: its retry
        streams the whole answer again)."""
        async with self._answer_lock:
            self._pending.clear()
            if self.answer is not None:
                await self.answer.close()
                await self.answer.remove()
                self.answer = None

    async def agents_panel(self) -> AgentsPanel:
        """The agents panel, mounted at the top of the side panels when first needed."""
        from tuiagent.ui.widgets.agents import AgentsPanel

        found = self.query(AgentsPanel)
        if found:
            return found.first()
        panel = AgentsPanel(id="agents")
        side = self.query_one("#side")
        await side.mount(panel, before=side.children[0] if side.children else None)
        return panel

    async def mcp_panel(self) -> McpPanel:
        """The MCP panel, mounted at the foot of the side panels when a server first shows."""
        from tuiagent.ui.widgets.mcp import McpPanel

        found = self.query(McpPanel)
        if found:
            return found.first()
        panel = McpPanel(id="mcp")
        await self.query_one("#side").mount(panel)
        return panel

    def feed(self, text: str) -> None:
        """Take streamed answer text without waiting for the screen. What arrives within a
        frame goes to the Markdown stream as one append: the app never pays a parse and a
        layout pass per token, and keys stay quick however fast the answer comes."""
        self._pending.append(text)
        if not self._flush_due:
            self._flush_due = True
            self.set_timer(FRAME_SECONDS, self.flush_answer)

    async def flush_answer(self) -> None:
        """Put the gathered answer text on screen. Past SPLIT_AT_CHARS the live part ends at
        a paragraph break and becomes one plain widget; the rest goes on in a new part."""
        async with self._answer_lock:
            self._flush_due = False
            text = "".join(self._pending)
            self._pending.clear()
            if not text:
                return
            if self.answer is None:
                self.answer = await self.chat.open_answer()
            cut = self.answer.cut(text)
            if cut is not None:
                part = self.answer
                await part.close()
                await self.chat.freeze(part, part.text + text[:cut])
                self.answer = await self.chat.open_answer(continued=True)
                text = text[cut:]
            if text:
                await self.answer.write(text)

    async def close_answer(self) -> None:
        await self.flush_answer()
        async with self._answer_lock:
            if self.answer is not None:
                await self.answer.close()
                self.answer = None

    def turn_finished(self, record: Turn) -> None:
        from tuiagent.ui.widgets.cache import CachePanel
        from tuiagent.ui.widgets.router import RouterPanel
        from tuiagent.ui.widgets.turns import TurnsTable

        self.query_one(TurnsTable).add_turn(record)
        self.query_one(CachePanel).add_turn(record)
        self.query_one(RouterPanel).add_turn(record)
        self.last_turn = record
        self.update_statusline()

    def tool_finished(self, record: Tool, output: str, original: str) -> None:
        from tuiagent.ui.widgets.tools import ToolResult, ToolResultsPanel

        result = ToolResult(record, output, original or output)
        self.query_one(ToolResultsPanel).add_result(result)
        view = self.chat.tool_views.get(record.tool_use_id)
        if view is None:
            view = self.chat.add_tool(record.tool_use_id, record.name, record.input)
        view.finished(record.ok, output, (result.original_tokens, result.seen_tokens))

    def clear_view(self) -> None:
        self.answer = None
        self._pending.clear()
        self.chat.clear_chat()


def cleared_notice(record: ContextEdit) -> str:
    """What the chat says when old tool results were cleared from the context."""
    ids, n = record.result_ids or [], record.results
    kept = ids[0] if len(ids) == 1 else f"{ids[0]}..{ids[-1]}"
    return (
        f"cleared {n} old tool result{'s' * (n != 1)} from the context "
        f"({record.tokens_before:,} -> {record.tokens_after:,} tokens); "
        f"{kept} {'stays' if len(ids) == 1 else 'stay'} for expand_result"
    )
