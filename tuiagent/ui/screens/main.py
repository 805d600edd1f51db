"""The main screen: chat and input on the left, the money panels around it.

It composes the panels and subscribes them to the agent's events (ui/agent_events.py):
each shows the kinds it has a `when_*` method for. The screen itself keeps the top bar's
status and the narrow layout's one-line status.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.events import Key
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.widgets._footer import FooterKey

from tuiagent.ui.agent_events import EventRoutes
from tuiagent.ui.commands import key_hint
from tuiagent.ui.widgets.chat import ChatInput, ChatLog

# The money panels and the agent's events load after the first frame (mount_panels): the
# first frame waits for neither.
if TYPE_CHECKING:
    from tuiagent.agent.events import (
        McpCostNoted,
        McpStateChanged,
        SubAgentChanged,
        TurnFinished,
        TurnStarted,
    )
    from tuiagent.runs.records import Turn
    from tuiagent.ui.widgets.agents import AgentsPanel
    from tuiagent.ui.widgets.gauge import BudgetGauge
    from tuiagent.ui.widgets.mcp import McpPanel


class KeysFooter(Footer):
    """Textual's footer, with its keys from the first frame on, and rebuilt only when what
    it shows changes (on start the bindings change several times, and each rebuild makes
    and styles every key again)."""

    _rebuild_due = False
    _shown: tuple[object, ...] = ()

    def _showing(self) -> tuple[object, ...]:
        """What the footer shows: the keys, and how."""
        keys = tuple(
            (b.key, b.action, b.description, enabled, tooltip)
            for _, b, enabled, tooltip in self.screen.active_bindings.values()
            if b.show
        )
        return (*keys, self.compact, self.show_command_palette)

    def compose(self) -> ComposeResult:
        self.set_reactive(Footer._bindings_ready, True)
        self._shown = self._showing()
        for widget in super().compose():
            # Each key bound to the footer's style starts in it (the palette's key is not).
            if isinstance(widget, FooterKey) and not widget.has_class("-command-palette"):
                widget.set_reactive(FooterKey.compact, self.compact)
                widget.set_class(self.compact, "-compact", update=False)
            yield widget

    def bindings_changed(self, screen: Screen[Any]) -> None:
        if not screen.app.app_focus or self._rebuild_due:
            return
        if self.is_attached and screen is self.screen:
            self._rebuild_due = True
            self.call_after_refresh(self._rebuild)

    async def _rebuild(self) -> None:
        self._rebuild_due = False
        if self._showing() != self._shown:
            await self.recompose()

    def keys_width(self) -> int:
        """Columns the keys take, compact: each `key description` and a space."""
        first: dict[str, Binding] = {}
        for _, binding, _, _ in self.screen.active_bindings.values():
            if binding.show:
                first.setdefault(binding.action, binding)
        return sum(
            len(self.app.get_key_display(b)) + len(b.description) + 2 for b in first.values()
        )

    def watch_show_command_palette(self) -> None:
        """Narrowed or widened: the palette's key goes or comes back."""
        if self.is_mounted:
            self.bindings_changed(self.screen)


# The footer's key to the command palette, on the right: "▏^p palette" and a margin.
PALETTE_KEY_COLUMNS = 14
# Below this many columns the side panels give way to a one-line status, and F5 shows
# one panel at a time in place of the turns table.
NARROW_BELOW = 120
# What F5 cycles through: wide, the panels or the chat alone; narrow, one panel at a time
# (the agents and MCP panels too, once they are shown), then the chat alone.
WIDE_VIEWS = ("panels", "chat")
NARROW_VIEWS = ("panels", "router", "cache", "tools")
LATER_PANELS = ("agents", "mcp")  # mounted when a sub-agent or an MCP server first shows


def welcome(key: Callable[[str], str]) -> str:
    """The first notice, naming the keys as the user has them (`key`: a command's key)."""
    return (
        "tuiagent: chat with an agent about the files here and see what every call costs; it "
        'never spends past the cap. Try "list the files" or "read README.md".\n'
        f"Enter sends · {key('cap_up')}/{key('cap_down')} cap up/down · {key('cycle_tier')} "
        f"tier · {key('toggle_panels')} panels · {key('report')} report · "
        f"{key('interrupt')} stops · {key('quit')} quits · /help\n"
        "Tool calls show as ▶ lines: click one (or shift+Tab to the chat, up/down to one, "
        "Enter) to see its exact output; PageUp/PageDown scroll the chat."
    )


class MainScreen(Screen[None]):
    # Its styles (main.tcss, beside this file) load with the app: a default screen's own
    # CSS_PATH is not read.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW_BELOW, "-wide")]  # noqa: RUF012
    VERTICAL_BREAKPOINTS = [(0, "-short"), (20, "-medium"), (36, "-tall")]  # noqa: RUF012
    # The chat pages from wherever the focus is (Home and End too, once it has the focus).
    BINDINGS = [  # noqa: RUF012
        Binding("pageup", "chat_page(-1)", "Page up", show=False, priority=True, id="chat_up"),
        Binding("pagedown", "chat_page(1)", "Page down", show=False, priority=True, id="chat_down"),
    ]

    def __init__(
        self,
        *,
        events: EventRoutes,
        clock: Callable[[], float] = time.time,
        on_ready: Callable[[], None] | None = None,
        key: Callable[[str], str] = key_hint,
    ) -> None:
        super().__init__(classes="-view-panels")
        self.events = events  # who shows which of the agent's events
        self.key = key  # the key of a command (ui/commands.py), for the hints on screen
        self.on_ready = on_ready
        self.clock = clock
        self.ready = False  # the panels are mounted
        self.view = "panels"  # what F5 shows (`views`)
        self.last_turn: Turn | None = None  # for the one-line status
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
                yield ChatLog(key=self.key, id="chat")
                yield ChatInput(key=self.key, id="input")
                yield Static("", id="estimate", markup=False)
            yield Vertical(id="side")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.chat.add_notice(welcome(self.key))
        self.query_one(ChatInput).focus()
        # After the frame that shows the footer's keys (the footer fills in after a refresh).
        self.call_after_refresh(self.call_after_refresh, self.mount_panels)

    def on_key(self, event: Key) -> None:
        """A key typed as the app starts, before the input had the focus, came here (Textual
        gives a key with nothing focused to the screen): it is the start of the message.
        Once the input has the focus, it takes every printable key itself, so one seen here
        then was sent before it."""
        if event.is_printable and event.character is not None and self.focused is self.input:
            event.stop()
            self.input.insert(event.character)

    async def mount_panels(self) -> None:
        from tuiagent.ui.widgets.cache import CachePanel
        from tuiagent.ui.widgets.gauge import BudgetGauge
        from tuiagent.ui.widgets.router import RouterPanel
        from tuiagent.ui.widgets.tools import ToolResultsPanel
        from tuiagent.ui.widgets.turns import TurnsTable

        gauge = BudgetGauge(id="gauge")
        await self.mount(gauge, after="#topbar")
        side = [RouterPanel(id="router"), CachePanel(id="cache", clock=self.clock)]
        tools = ToolResultsPanel(id="tools")
        await self.query_one("#side").mount_all([*side, tools])
        turns = TurnsTable(id="turns")
        await self.mount(turns, before=self.query_one(Footer))
        # The screen after the panels: its status line reads what they show.
        self.events.subscribe(self.chat, self.input, *side, tools, turns, gauge, self)
        self.ready = True
        if self.on_ready is not None:
            self.on_ready()

    def on_resize(self) -> None:
        narrow = self.size.width < NARROW_BELOW
        footer = self.query_one(KeysFooter)
        footer.compact = narrow  # the keys fit 80 columns
        # The palette's key, where it fits beside the others (80 columns do).
        fits = footer.keys_width() + PALETTE_KEY_COLUMNS <= self.size.width
        footer.show_command_palette = not narrow or fits
        if self.view not in self.views():
            self.show_view("panels")

    def views(self) -> tuple[str, ...]:
        """What F5 cycles through at this width."""
        if self.size.width >= NARROW_BELOW:
            return WIDE_VIEWS
        shown = tuple(name for name in LATER_PANELS if self.query(f"#{name}"))
        return (*NARROW_VIEWS, *shown, "chat")

    def cycle_view(self) -> str:
        """F5: the next of what can be shown at this width."""
        views = self.views()
        at = views.index(self.view) if self.view in views else -1
        self.show_view(views[(at + 1) % len(views)])
        return self.view

    def action_chat_page(self, pages: int) -> None:
        chat = self.chat
        chat.scroll_to(
            y=chat.scroll_y + pages * chat.scrollable_content_region.height, animate=False
        )

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
        # One line across the screen (main.tcss): a new text never changes its size.
        self.query_one("#statusline", Static).update(" · ".join(parts), layout=False)

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

    def show_estimate(self, line: str) -> None:
        """What the message being typed would cost (the agent's estimate), or nothing (then
        the line takes no room). The same line again changes nothing: a change lays the
        screen out again (Enter clears a line that is mostly empty already)."""
        for shown in self.query("#estimate").results(Static):
            if shown.content != line or shown.display != bool(line):
                shown.update(line)
                shown.display = bool(line)

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
        # One line whose width is the top bar's rest: a new text never changes its size.
        self.query_one("#status", Static).update(text, layout=False)

    # --- the agent's events (ui/agent_events.py) ------------------------------------

    def when_turn_started(self, event: TurnStarted) -> None:
        self.set_status(f"turn {event.turn}: {event.model}…")

    def when_turn_finished(self, event: TurnFinished) -> None:
        self.last_turn = event.record
        self.update_statusline()

    def when_sub_agent_changed(self, event: SubAgentChanged) -> None:
        self.agents_panel().update_agent(event)
        self.update_statusline()  # the narrow layout says how many are running

    def when_mcp_state_changed(self, event: McpStateChanged) -> None:
        self.mcp_panel().seen(event.record)

    def when_mcp_cost_noted(self, event: McpCostNoted) -> None:
        self.mcp_panel().seen(event.record)

    def mcp_panel(self) -> McpPanel:
        """The MCP panel, mounted at the foot of the side panels when a server first shows."""
        from tuiagent.ui.widgets.mcp import McpPanel

        found = self.query(McpPanel)
        if found:
            return found.first()
        panel = McpPanel(id="mcp")
        self.query_one("#side").mount(panel)
        return panel

    def interrupted(self, record: Turn | None) -> None:
        """Esc stopped the work: every sub-agent shows stopped, and the stopped call (if one
        was streaming) is a row in the panels."""
        from tuiagent.agent.events import TurnFinished
        from tuiagent.ui.widgets.agents import AgentsPanel

        for panel in self.query(AgentsPanel):
            panel.stopped()
        if record is not None:
            self.events.deliver(TurnFinished(record))

    def agents_panel(self) -> AgentsPanel:
        """The agents panel, mounted at the top of the side panels when first needed."""
        from tuiagent.ui.widgets.agents import AgentsPanel

        found = self.query(AgentsPanel)
        if found:
            return found.first()
        panel = AgentsPanel(id="agents")
        side = self.query_one("#side")
        side.mount(panel, before=side.children[0] if side.children else None)
        return panel
