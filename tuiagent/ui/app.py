"""The app: chat with the agent and watch the money, live.

The screen opens at once; the SDK (over a second to import) is imported by a worker after
the first frame. The agent runs in an exclusive worker; Escape cancels it, and the agent
keeps what streamed and counts its cost. The app holds no agent logic: it shows events and
calls the agent's steering methods (set_cap, set_tier).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import signal
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker

from tuiagent.config import KEYMAP_IDS, TIER_CHOICES, Settings, parse_money
from tuiagent.errors import ConfigError, TuiagentError, UsageError
from tuiagent.exit_codes import exit_for_signal
from tuiagent.llm.markers import SUMMARY_MARKER
from tuiagent.paths import default_log_dir, ui_state_file, user_themes_dir
from tuiagent.redact import redact
from tuiagent.runs.outcome import outcome
from tuiagent.runs.recent import find_resume
from tuiagent.runs.records import ContextEdit, HaltReason, Turn, read
from tuiagent.ui.format import cap as fmt_cap
from tuiagent.ui.format import money
from tuiagent.ui.messages import OpenToolResult, SessionFailed, SessionOpened
from tuiagent.ui.screens.main import MainScreen
from tuiagent.ui.themes import (
    DEFAULT_THEME,
    builtin_themes_dir,
    load_themes,
    read_state,
    write_state,
)
from tuiagent.ui.widgets.chat import ChatInput

if TYPE_CHECKING:
    from tuiagent.agent.events import Event
    from tuiagent.agent.loop import Agent
    from tuiagent.llm.offline import OfflineModel
    from tuiagent.session import Session

# The offline model's pace in the app when the config does not set one: a lifelike stream.
APP_OFFLINE_TOKENS_PER_SECOND = 80.0

SLASH_HELP = {
    "/budget USD": "set the spending cap, e.g. `/budget 2.50` (never below what is spent)",
    "/tier TIER": "auto, fast, balanced or deep",
    "/clear": "start a new conversation: the next request has no earlier messages (the budget goes on)",
    "/compact": "summarise the conversation now (a priced call on the fast tier)",
    "/turns N": "allow N model calls per request; goes on with a request halted at the limit",
    "/system": "show the system prompt, its size and what it costs per turn",
    "/help": "this help",
}


REPORT_RUNS = 20  # the report screen covers this many recent runs
TOAST_S = 3.0  # how long a toast about a key's effect stays (the gauge shows it for good)
LOWEST_STEPPED_CAP = Decimal("0.0001")  # F2 stops here; /budget sets any cap


def stepped_cap(cap: Decimal, configured: Decimal, *, down: bool) -> Decimal | None:
    """The cap one F2 (down) or F3 (up) press away, on a grid of the step: the configured
    step while the cap stays above it, else the power of ten below the cap (from $0.10 down
    goes $0.09, from $0.019 up goes $0.02). None: no step down is left above
    LOWEST_STEPPED_CAP."""
    if cap <= 0:
        return None if down else configured
    if (cap - configured if down else cap) >= configured:
        step = configured
    else:
        below = cap - cap.scaleb(-6) if down else cap  # going down, the step is below the cap
        step = Decimal(1).scaleb(below.adjusted())
    grid = cap / step
    if down:
        new = (grid.to_integral_value(rounding=ROUND_CEILING) - 1) * step
        return new.normalize() if new >= LOWEST_STEPPED_CAP else None
    return ((grid.to_integral_value(rounding=ROUND_FLOOR) + 1) * step).normalize()


KEEP_WARM_TICK_S = 15.0  # how often an idle app lets the agent weigh a cache refresh


class TuiagentApp(App[int]):
    CSS_PATH = ["app.tcss", "screens/main.tcss"]  # noqa: RUF012
    TITLE = "tuiagent"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [  # noqa: RUF012
        # Priority: the input never takes these keys (TextArea binds some function keys).
        Binding(
            "f2", "cap_down", "Cap-", id="cap_down", tooltip=KEYMAP_IDS["cap_down"], priority=True
        ),
        Binding("f3", "cap_up", "Cap+", id="cap_up", tooltip=KEYMAP_IDS["cap_up"], priority=True),
        Binding(
            "f4",
            "cycle_tier",
            "Tier",
            id="cycle_tier",
            tooltip=KEYMAP_IDS["cycle_tier"],
            priority=True,
        ),
        Binding("escape", "interrupt", "Stop", id="interrupt", tooltip=KEYMAP_IDS["interrupt"]),
        Binding(
            "f5",
            "toggle_panels",
            "Panels",
            id="toggle_panels",
            tooltip=KEYMAP_IDS["toggle_panels"],
            priority=True,
        ),
        Binding("f8", "report", "Report", id="report", tooltip=KEYMAP_IDS["report"], priority=True),
        Binding("f6", "go_on", "Go on", id="go_on", tooltip=KEYMAP_IDS["go_on"], priority=True),
        Binding("ctrl+q", "quit", "Quit", id="quit", tooltip=KEYMAP_IDS["quit"], priority=True),
    ]

    def __init__(
        self,
        settings: Settings,
        *,
        workspace: Path = Path("."),
        offline: bool = False,
        resume: Path | None = None,
        pick_resume: bool = False,
        clock: Callable[[], float] = time.time,
        state_path: Path | None = None,
        themes_dir: Path | None = None,
        agent_clock: Callable[[], float] | None = None,
        offline_model: OfflineModel | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.workspace = workspace
        self.offline = offline
        self.resume = resume
        self.pick_resume = pick_resume  # open the resume picker first
        self.clock = clock
        self.agent_clock = agent_clock or time.monotonic
        self.offline_model = offline_model  # a given offline model (benchmarks), else built
        self.state_path = state_path or ui_state_file()
        self.themes_dir = themes_dir if themes_dir is not None else user_themes_dir()
        self.session: Session | None = None
        self.queue: list[str] = []
        self.turn_worker: Worker[None] | None = None
        self.finished = False
        self.always_allowed: set[str] = set()  # tool calls the user allowed "always"
        self._context_record: Turn | None = None  # the last agent turn's
        self.cap_halt = False  # halted by the cap until it is raised
        self.session_calls = 0  # model calls completed in this session (said on quit)
        self._meter = ""  # the context meter, on the input's border when nothing is queued
        self.main = MainScreen(clock=clock, on_ready=self._screen_ready)
        self._theme_problems: list[str] = []
        self._load_themes()

    # --- start -------------------------------------------------------------------

    def get_default_screen(self) -> Screen[Any]:
        return self.main

    def _load_themes(self) -> None:
        """Register the themes and pick one before the stylesheet is first built: a theme
        set after mount would rebuild and reapply every style before the first frame."""
        themes, self._theme_problems = load_themes([builtin_themes_dir(), self.themes_dir])
        for theme in themes:
            self.register_theme(theme)
        wanted = read_state(self.state_path).get("theme")
        name = wanted if wanted in self.available_themes else DEFAULT_THEME
        if name in self.available_themes:
            # What the theme watcher does, minus the stylesheet rebuild it schedules: the
            # stylesheet is first built with this theme anyway.
            self.set_reactive(TuiagentApp.theme, name)
            dark = self.current_theme.dark
            self.update_classes(
                {f"-theme-{name}": True, "-dark-mode": dark, "-light-mode": not dark},
                update=False,
            )
            self._refresh_truecolor_filter(self.ansi_theme)
            self.stylesheet.set_variables(self.get_css_variables())

    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        for problem in self._theme_problems:
            self.notify(problem, severity="warning")
        if self.settings.keymap:  # each bindings change recomposes the footer
            self.set_keymap(self.settings.keymap)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):  # end as a quit does: the same records
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._stop_by_signal, int(sig))

    def _stop_by_signal(self, signum: int) -> None:
        self.run_worker(self.quit(exit_for_signal(signum)), group="quit", exclusive=True)

    def _screen_ready(self) -> None:
        gc.enable()  # run_app held it off till the first frame
        if self.settings.keep_warm:
            self.set_interval(KEEP_WARM_TICK_S, self._keep_warm_tick)
        self.main.set_tier(self.settings.tier)
        self.main.gauge.cap = self.settings.max_cost_usd
        if self.pick_resume:
            self._pick_session()
            return
        # After the first frame is on the terminal: the SDK import would contend with it.
        self.call_after_refresh(self.set_timer, 0.05, self.open_session)

    def _pick_session(self) -> None:
        """`--resume` without an id: the picker of recent sessions, then the session."""
        from tuiagent.runs.recent import recent_sessions
        from tuiagent.ui.screens.resume import ResumeScreen

        sessions = recent_sessions(self.settings.log_dir or default_log_dir())
        if not sessions:
            self.main.chat.add_notice("no earlier session to resume: a new one starts")
            self.open_session()
            return

        def chosen(path: Path | None) -> None:
            self.resume = path
            self.open_session()

        self.push_screen(ResumeScreen(sessions), callback=chosen)

    def _remember_theme(self, theme: Any) -> None:
        write_state(self.state_path, theme=theme.name)

    @work(thread=True, exclusive=True, group="session", exit_on_error=False)
    def open_session(self) -> None:
        """Import the SDK and build the agent off the UI thread: the first frame never waits."""
        try:
            from tuiagent.runs.transcript import load_messages
            from tuiagent.session import open_session

            session = open_session(
                self.settings,
                workspace=self.workspace,
                offline=self.offline,
                clock=self.agent_clock,
                offline_model=self.offline_model,
            )
            history = load_messages(self.resume) if self.resume is not None else []
        except TuiagentError as exc:
            self.post_message(SessionFailed(str(exc)))
            return
        resumed = self.resume.stem if self.resume is not None else None
        self.post_message(SessionOpened(session, history, resumed))

    @on(SessionFailed)
    def _session_failed(self, message: SessionFailed) -> None:
        self.main.set_status("not started")
        self.main.chat.add_notice(f"cannot start: {message.error}", "error")
        self.notify(message.error, title="Cannot start", severity="error")

    @on(SessionOpened)
    def _session_opened(self, message: SessionOpened) -> None:
        from tuiagent.llm.offline import OFFLINE_NOTICE

        # The SDK and the app are loaded and live as long as the app: move them out of the
        # collector's way, so a collection while an answer streams scans only what is new.
        gc.freeze()
        session = self.session = message.session
        agent = session.agent
        agent.approve = self.ask_approval
        agent.start()
        from tuiagent.cost.pricing import context_window

        self.main.context_window = context_window
        simulated = session.offline_model is not None
        self.main.set_offline(OFFLINE_NOTICE if simulated else None)
        if session.notice:
            self.main.chat.add_notice(session.notice, "warning")
        elif simulated:
            self.main.chat.add_notice(
                "The model is simulated (--offline): it answers from the files here, and each "
                "call is priced as the tier's real Claude model would charge."
            )
        if message.history:
            agent.state.history = list(message.history)
            self._show_history(message.history)
            self.main.chat.add_notice(
                f"resumed run {message.resumed_from}: {len(message.history)} messages; "
                f"this session's spending starts at $0 against its own cap",
            )
        self.main.set_status(f"run {agent.state.run_id}")
        self.main.gauge.show(agent.budget_state().budget)
        self._send_next()

    @property
    def agent(self) -> Agent | None:
        return self.session.agent if self.session is not None else None

    @property
    def busy(self) -> bool:
        return self.turn_worker is not None and not self.turn_worker.is_finished

    # --- sending -------------------------------------------------------------------

    @on(ChatInput.Submitted)
    def _submitted(self, message: ChatInput.Submitted) -> None:
        text = message.text
        chat_input = self.main.input
        if text.startswith("/"):
            chat_input.remember(text)
            chat_input.clear()
            self.run_slash(text)
            return
        if self.at_cap():
            self.notify(
                "The cap is reached: raise it (F3 or /budget) to send.",
                title="Halted",
                severity="error",
            )
            return  # the text stays in the input: nothing is lost
        chat_input.remember(text)
        chat_input.clear()
        self.queue.append(text)
        self._send_next()
        self._show_queue()

    def _show_queue(self) -> None:
        """Waiting messages are counted under the input (a chat line would land in the
        middle of the answer streaming now)."""
        n = len(self.queue)
        self.main.input.border_subtitle = (
            f"{n} queued: sent when the agent is free (Esc drops)" if n else self._meter
        )

    def at_cap(self) -> bool:
        """Halted by the cap: the next call's worst case does not fit what is left.
        Raising the cap (agent.set_cap) lifts it."""
        return self.cap_halt

    def _send_next(self) -> None:
        if self.agent is None or self.busy or not self.queue or self.at_cap():
            return
        text = self.queue.pop(0)
        self._show_queue()
        self.main.chat.add_user(text)
        self.turn_worker = self.run_turn(text)

    @work(exclusive=True, group="agent", exit_on_error=False)
    async def run_turn(self, text: str) -> None:
        agent = self.agent
        assert agent is not None
        await self._drive(agent, agent.send(text))

    @work(exclusive=True, group="agent", exit_on_error=False)
    async def run_go_on(self) -> None:
        agent = self.agent
        assert agent is not None
        await self._drive(agent, agent.go_on())

    @work(exclusive=True, group="agent", exit_on_error=False)
    async def run_compact(self) -> None:
        agent = self.agent
        assert agent is not None
        await self._drive(agent, agent.compact())

    async def _drive(self, agent: Agent, events: AsyncGenerator[Event, None]) -> None:
        """Show the agent's events as they come; a failure is a notice, never a crash."""
        from tuiagent.agent.events import (
            AnswerDelta,
            AttemptFailed,
            ContextEdited,
            Halted,
            TurnFinished,
        )

        screen = self.main
        calls, cost = 0, Decimal(0)  # what this message cost: its calls and failed attempts
        # Esc: the stopped call's record (False when no call was streaming).
        stopped: Turn | Literal[False] | None = None
        if not self.cap_halt:
            screen.gauge.halted = None  # a new request (or going on): the last halt is over
        # The agent runs in a task of its own that only waits inside the agent: Esc cancels
        # it there, where the call in flight is settled, never while the screen is drawing.
        queue: asyncio.Queue[Event | None] = asyncio.Queue()

        async def produce() -> None:
            try:
                # Closed at once when stopped: the call in flight is accounted there and then.
                async with contextlib.aclosing(events) as stream:
                    async for event in stream:
                        queue.put_nowait(event)
            finally:
                queue.put_nowait(None)

        producer = asyncio.create_task(produce())
        try:
            while (event := await queue.get()) is not None:
                if isinstance(event, AnswerDelta):
                    screen.feed(event.text)  # shown within a frame; never awaited per token
                    continue
                await screen.apply(event)
                if isinstance(event, TurnFinished | AttemptFailed):
                    calls += isinstance(event, TurnFinished)
                    self.session_calls += isinstance(event, TurnFinished)
                    cost += event.record.cost_usd
                if isinstance(event, Halted) and event.by_cap:
                    self.cap_halt = True
                if isinstance(event, TurnFinished) and event.record.purpose == "agent":
                    self._show_context(event.record)
                elif isinstance(event, ContextEdited):
                    self._context_edited(event.record)
            await producer  # the agent's own error, if it failed
        except asyncio.CancelledError:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer
            stopped = self._interrupted(agent)
            if stopped:
                calls, cost = calls + 1, cost + stopped.cost_usd
            raise
        except Exception as exc:  # a failed turn is a notice, never a crash
            text = redact(str(exc))
            screen.chat.add_notice(f"error: {text}", "error")
            self.notify(text, title="Error", severity="error")
        finally:
            screen.gauge.show(agent.budget_state().budget)  # settled in the call's finally
            screen.set_status(f"run {agent.state.run_id}")
            self.call_later(screen.close_answer)
            if stopped is not None:  # under what streamed before Esc
                paid = money(stopped.cost_usd, 5) if stopped else ""
                self.call_later(
                    screen.chat.add_notice,
                    f"interrupted: what streamed stays; its cost counts ({paid})"
                    if stopped
                    else "interrupted",
                )
            if calls or cost:
                self.call_later(
                    screen.chat.add_subtotal,
                    f"this message {money(cost)} in {calls} call{'s' * (calls != 1)}, "
                    f"session {money(screen.gauge.spent)}",
                )
            self.call_later(self._send_next)
            self.call_later(self.refresh_bindings)  # F6 shows while halted at max_turns

    def _interrupted(self, agent: Agent) -> Turn | Literal[False]:
        """The call Esc stopped, once its record is written (a row in the panels); False when
        no call was streaming. Every sub-agent is shown stopped."""
        from tuiagent.ui.widgets.agents import AgentsPanel

        for panel in self.main.query(AgentsPanel):
            panel.stopped()
        record = _last_turn(agent.log.path)
        if record is not None and record.stop_reason == "interrupted":
            self.main.turn_finished(record)
            return record
        return False

    async def ask_approval(self, name: str, arguments: dict[str, Any]) -> bool | str:
        """The agent's approval hook: a dialog; the tool waits for the answer. True runs
        it; False or the user's reason declines. A command allowed "always" runs again
        without asking in this session."""
        from tuiagent.ui.screens.dialogs import Approval, ApproveScreen

        asked = json.dumps([name, arguments], sort_keys=True)
        if asked in self.always_allowed:
            return True
        answer: asyncio.Future[Approval] = asyncio.get_running_loop().create_future()

        def settle(result: Approval | None) -> None:
            if not answer.done():
                answer.set_result(result or Approval(run=False))

        self.push_screen(ApproveScreen(name, arguments), callback=settle)
        approval = await answer
        if approval.always:
            self.always_allowed.add(asked)
        return True if approval.run else (approval.reason or False)

    # --- the money -----------------------------------------------------------------

    # --- the context ---------------------------------------------------------------

    def _show_context(self, record: Turn, tokens: int | None = None) -> None:
        """The context meter (on the input's border): how full the window is, and what
        reading the history cost on the last call."""
        from tuiagent.ui.widgets.context import meter_text

        parts = record.cost_breakdown_usd
        input_cost = parts.input + parts.cache_write + parts.cache_read
        self._context_record = record
        shown = record.context_tokens if tokens is None else tokens
        self._meter = meter_text(
            shown, record.context_window, input_cost if tokens is None else None
        )
        self._show_queue()  # the meter shares the input's border with the queue count

    def _context_edited(self, record: ContextEdit) -> None:
        if record.action == "clear_tool_results" and record.result_ids:
            ids = record.result_ids
            self.main.chat.add_notice(
                f"cleared {record.results} old tool results from the context "
                f"({record.tokens_before:,} -> {record.tokens_after:,} tokens); "
                f"{ids[0]}..{ids[-1]} stay for expand_result"
            )
        if self._context_record is not None:
            self._show_context(self._context_record, record.tokens_after)

    def set_cap(self, amount: Decimal) -> None:
        agent = self.agent
        before = self._cap_now()
        if agent is None:
            self.settings.max_cost_usd = amount
            in_force = amount
            self.main.gauge.cap = amount
        else:
            budget = agent.set_cap(amount).budget
            in_force = budget.cap
            if self.cap_halt and budget.cap > before:
                self.cap_halt = False
                self.main.gauge.halted = None
            self.main.gauge.show(budget)
        if in_force != amount:  # the gauge shows the cap; a toast says why it is not as asked
            stays = "stays" if in_force == before else "is"
            self.notify(
                f"the cap {stays} {fmt_cap(in_force)}: it cannot go below what is spent "
                "and in flight",
                title="Budget",
                severity="warning",
                timeout=TOAST_S,
            )
        self._send_next()

    def set_tier(self, tier: str) -> None:
        self.settings.tier = tier
        if self.agent is not None:
            self.agent.set_tier(tier)
        self.main.set_tier(tier)

    # --- keys ----------------------------------------------------------------------

    def _cap_now(self) -> Decimal:
        return self.main.gauge.cap

    def action_cap_down(self) -> None:
        lower = stepped_cap(self._cap_now(), self.settings.budget_step_usd, down=True)
        if lower is None:
            self.notify(
                f"F2 goes no lower than {fmt_cap(LOWEST_STEPPED_CAP)}; /budget sets any cap",
                title="Budget",
                severity="warning",
                timeout=TOAST_S,
            )
            return
        self.set_cap(lower)

    def action_cap_up(self) -> None:
        """One step up; halted at the cap, up to the first step that lets the next call go."""
        step = self.settings.budget_step_usd
        higher = stepped_cap(self._cap_now(), step, down=False)
        assert higher is not None  # up always has a next step
        agent = self.agent
        if self.at_cap() and agent is not None and self.main.needed_usd is not None:
            enough = self.main.gauge.spent + self.main.needed_usd
            while higher < enough:
                higher = stepped_cap(higher, step, down=False) or enough
        self.set_cap(higher)

    def action_cycle_tier(self) -> None:
        current = self.agent.tier if self.agent is not None else self.settings.tier
        order = list(TIER_CHOICES)
        self.set_tier(order[(order.index(current) + 1) % len(order)])

    def action_interrupt(self) -> None:
        if self.busy and self.turn_worker is not None:
            self.turn_worker.cancel()
        elif self.queue:
            self.queue.clear()
            self._show_queue()
            self.main.chat.add_notice("queued messages dropped")

    def action_toggle_panels(self) -> None:
        self.main.cycle_view()

    def action_report(self) -> None:
        """The report screen over the recent runs of this log dir (this session included)."""
        from tuiagent.report.build import build_report
        from tuiagent.ui.screens.report import ReportScreen

        log_dir = self.settings.log_dir or default_log_dir()
        try:
            report = build_report(log_dir, last=REPORT_RUNS, top=10)
        except TuiagentError as exc:
            self.notify(str(exc), title="Report", severity="warning")
            return
        self.push_screen(ReportScreen(report))

    def _keep_warm_tick(self) -> None:
        """Idle: the agent decides whether refreshing the cache before it expires pays."""
        if self.agent is not None and not self.busy and self.settings.keep_warm:
            self.run_keep_warm()

    @work(exclusive=True, group="agent", exit_on_error=False)
    async def run_keep_warm(self) -> None:
        agent = self.agent
        assert agent is not None
        async with contextlib.aclosing(agent.keep_warm()) as events:
            async for event in events:
                await self.main.apply(event)

    async def action_quit(self) -> None:
        await self.quit(0)

    async def quit(self, code: int) -> None:
        """Stop the call in flight (it is accounted), write run_end, leave with `code`."""
        if self.busy and self.turn_worker is not None:
            self.turn_worker.cancel()
            with contextlib.suppress(Exception):
                await self.turn_worker.wait()
        self.finish_run()
        self.exit(return_code=code)

    def finish_run(self) -> None:
        """Write the run's end once: a UI session is one run."""
        agent = self.agent
        if agent is None or self.finished:
            return
        self.finished = True
        agent.finish(outcome(agent.state.halt_reason))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        step = fmt_cap(self.settings.budget_step_usd)
        yield SystemCommand("Raise the cap", f"cap + {step}", self.action_cap_up)
        yield SystemCommand("Lower the cap", f"cap - {step}", self.action_cap_down)
        yield SystemCommand("Cycle the tier", KEYMAP_IDS["cycle_tier"], self.action_cycle_tier)
        yield SystemCommand("Stop the turn", KEYMAP_IDS["interrupt"], self.action_interrupt)
        yield SystemCommand("Toggle panels", KEYMAP_IDS["toggle_panels"], self.action_toggle_panels)
        yield SystemCommand("Show the system prompt", "/system", self.show_system)
        yield SystemCommand("Cost report", KEYMAP_IDS["report"], self.action_report)
        yield SystemCommand("Go on", KEYMAP_IDS["go_on"], self.action_go_on)
        yield SystemCommand("New conversation", "/clear", self.clear_conversation)

    # --- slash commands ------------------------------------------------------------

    def run_slash(self, text: str) -> None:
        command, _, arg = text.strip().partition(" ")
        arg = arg.strip()
        if command == "/budget":
            try:
                self.set_cap(parse_money(arg, "/budget"))
            except ConfigError as exc:
                self.notify(f"{exc} (e.g. /budget 2.50)", severity="error")
        elif command == "/tier":
            if arg not in TIER_CHOICES:
                self.notify(f"/tier must be one of {', '.join(TIER_CHOICES)}", severity="error")
            else:
                self.set_tier(arg)
        elif command == "/clear":
            self.clear_conversation()
        elif command == "/compact":
            if self.agent is None or self.busy:
                self.notify("/compact waits till the agent is free", severity="warning")
            else:
                self.turn_worker = self.run_compact()
        elif command == "/turns":
            self.set_max_turns(arg)
        elif command == "/system":
            self.show_system()
        elif command == "/help":
            self.show_help()
        else:
            self.notify(f"unknown command {command}: try /help", severity="error")

    def clear_conversation(self) -> None:
        """/clear: a new conversation in the same session; the budget goes on."""
        agent = self.agent
        if agent is not None and self.busy:
            self.notify("/clear waits till the agent is free (Esc stops it)", severity="warning")
            return
        self.main.clear_view()
        if agent is None:
            return
        record = agent.clear_conversation().record
        self._context_edited(record)
        self.main.chat.add_notice(
            f"new conversation: the next request has no earlier messages "
            f"({record.messages_before} cleared); {money(agent.ledger.spent, 4)} spent so "
            "far counts against the same cap"
        )

    def set_max_turns(self, arg: str) -> None:
        """/turns N: model calls allowed per request; a request halted there goes on."""
        try:
            turns = int(arg)
            if turns < 1:
                raise ValueError
        except ValueError:
            self.notify("/turns takes a whole number >= 1, e.g. /turns 40", severity="error")
            return
        self.settings.max_turns = turns
        if self.agent is not None:
            self.agent.set_max_turns(turns)
        self.notify(f"up to {turns} model calls per request", title="Turns")
        self.action_go_on()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """F6 is in the footer only while a request is halted at max_turns."""
        if action == "go_on":
            agent = self.agent
            return (
                agent is not None
                and agent.state.halt_reason == HaltReason.MAX_TURNS
                and not self.busy
            )
        return True

    def action_go_on(self) -> None:
        """Go on with a request halted by max_turns (F6), with a fresh allowance."""
        agent = self.agent
        if agent is None or self.busy or agent.state.halt_reason != HaltReason.MAX_TURNS:
            return
        self.main.gauge.halted = None
        self.turn_worker = self.run_go_on()

    def show_system(self) -> None:
        from tuiagent.llm.tokens import estimate_tokens

        s = self.settings
        try:
            prompt = self.agent.system_prompt if self.agent else s.resolved_system_prompt()
        except ConfigError as exc:
            self.notify(str(exc), severity="error")
            return
        n = estimate_tokens(prompt)
        source = (
            f"from {s.system_prompt_file}"
            if s.system_prompt_file
            else "config `system_prompt`"
            if s.system_prompt != Settings().system_prompt
            else "built in"
        )
        lines = [f"**System prompt** ({source}): {n:,} tokens"]
        agent = self.agent
        if agent is not None:
            from tuiagent.config import TIERS
            from tuiagent.llm.usage import TokenUsage

            # Paid on every turn: on whichever tier the turn runs, plain or read from the cache.
            for tier in TIERS if agent.tier == "auto" else (agent.tier,):
                model = s.model_for(tier)
                plain = agent.pricer.price(model, TokenUsage(input_tokens=n)).total
                cached = agent.pricer.price(model, TokenUsage(cache_read_input_tokens=n)).total
                lines.append(
                    f"- costs {money(plain, 6)} per turn on {model} ({tier}), "
                    f"{money(cached, 6)} when cached"
                )
        self.main.chat.add_answer("\n\n".join(lines), follow=True)
        # The prompt as exact text that wraps (a code block would cut its long lines).
        self.main.chat.add_notice(prompt, "quoted")

    def show_help(self) -> None:
        rows = [f"| `{cmd}` | {what} |" for cmd, what in SLASH_HELP.items()]
        keys = []
        for binding in self.BINDINGS:
            assert isinstance(binding, Binding) and binding.id is not None
            key = self.settings.keymap.get(binding.id, binding.key)
            keys.append(f"| {key} | {binding.tooltip} |")
        text = (
            "| command | what it does |\n| --- | --- |\n" + "\n".join(rows) + "\n\n"
            "| key | what it does |\n| --- | --- |\n" + "\n".join(keys) + "\n\n"
            "Enter sends, shift+enter or ctrl+j starts a new line, up/down recall earlier "
            "messages. ctrl+p opens the command palette."
        )
        self.main.chat.add_answer(text, follow=True)

    # --- tool results ----------------------------------------------------------------

    @on(OpenToolResult)
    def _open_tool_result(self, message: OpenToolResult) -> None:
        from tuiagent.ui.widgets.tools import ToolResultsPanel

        results = self.main.query_one(ToolResultsPanel).results
        if 0 <= message.index < len(results):
            from tuiagent.ui.screens.dialogs import ViewerScreen

            self.push_screen(ViewerScreen(results[message.index]))

    def _show_history(self, history: list[dict[str, Any]]) -> None:
        """A resumed run's conversation, as it was."""
        chat = self.main.chat
        for entry in history:
            content = entry.get("content")
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
            for block in blocks or []:
                kind = block.get("type")
                if kind == "text" and block.get("text", "").startswith(SUMMARY_MARKER):
                    chat.add_notice(f"(compacted) {block['text'].partition(chr(10))[2]}")
                elif kind == "text" and entry.get("role") == "user":
                    chat.add_user(block.get("text", ""))
                elif kind == "text":
                    chat.add_answer(block.get("text", ""))
                elif kind == "tool_use":
                    args = block.get("input")
                    chat.add_tool(
                        block.get("id", ""),
                        block.get("name", "?"),
                        args if isinstance(args, dict) else {},
                    )
                elif kind == "tool_result" and (
                    view := chat.tool_views.get(block.get("tool_use_id", ""))
                ):
                    # It ran in the earlier run: done, with what the model saw.
                    output = block.get("content")
                    text = output if isinstance(output, str) else json.dumps(output)
                    view.finished(not block.get("is_error"), text, None)


def _last_turn(path: Path) -> Turn | None:
    """The orchestrator's last turn record (not a sub-agent's)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        record = read(line)
        if isinstance(record, Turn) and record.agent in (None, "main"):
            return record
    return None


# Keys the app keeps for itself: the input's own editing keys and the command palette.
RESERVED_KEYS = {
    "enter": "sends the message",
    "shift+enter": "starts a new line",
    "ctrl+j": "starts a new line",
    "tab": "moves the focus",
    "shift+tab": "moves the focus",
    "up": "recalls earlier messages",
    "down": "recalls earlier messages",
    "backspace": "edits the input",
    "ctrl+p": "opens the command palette",
}
MODIFIERS = {"ctrl", "shift", "alt", "meta", "super", "hyper"}


def _known_key(key: str) -> bool:
    from textual.keys import Keys, key_to_character

    *mods, base = key.split("+")
    if not base or not set(mods) <= MODIFIERS:
        return False
    names = {k.value.rsplit("+", 1)[-1] for k in Keys}
    return base in names or (len(base) == 1 and base.isprintable()) or bool(key_to_character(base))


def check_keymap(keymap: dict[str, str]) -> None:
    """Each remapped key is a key Textual knows, and no key does two things: one line that
    names the config key otherwise (exit 2)."""
    taken: dict[str, str] = {}
    for binding in TuiagentApp.BINDINGS:
        assert isinstance(binding, Binding) and binding.id is not None
        for key in keymap.get(binding.id, binding.key).split(","):
            key = key.strip()
            name = f"keymap.{binding.id}"
            if not _known_key(key):
                raise ConfigError(f"{name}: {key!r} is not a key name (e.g. 'f9', 'ctrl+t')")
            if len(key) == 1 and key.isprintable():
                raise ConfigError(
                    f"{name}: {key!r} would be typed into the input; pick 'f9' or 'ctrl+t'"
                )
            if key in RESERVED_KEYS:
                raise ConfigError(f"{name}: {key!r} {RESERVED_KEYS[key]} and cannot be remapped")
            if key in taken:
                raise ConfigError(
                    f"{name}: {key!r} is already the key of {taken[key]} "
                    f"({KEYMAP_IDS[taken[key]]}); remap that one too"
                )
            taken[key] = binding.id


def run_app(settings: Settings, *, workspace: Path, offline: bool, resume: str | None) -> int:
    """`tuiagent` with no subcommand. Bad input fails here, in one line, before the screen."""
    if not workspace.is_dir():
        raise UsageError(f"--workspace: {workspace} is not a directory")
    check_keymap(settings.keymap)
    settings.resolved_system_prompt()  # a missing system_prompt_file is named before the screen
    if settings.offline_tokens_per_second == 0:
        settings = dataclasses.replace(
            settings, offline_tokens_per_second=APP_OFFLINE_TOKENS_PER_SECOND
        )
    path = find_resume(settings.log_dir or default_log_dir(), resume) if resume else None
    # No collections till the first frame is up (_screen_ready): starting makes many objects
    # and frees few, so a collection then scans them for nothing.
    gc.disable()
    try:
        app = TuiagentApp(
            settings, workspace=workspace, offline=offline, resume=path, pick_resume=resume == ""
        )
        app.run()
    finally:
        gc.enable()
    app.finish_run()
    agent = app.agent
    if agent is not None:  # the session's total, on the terminal the app gave back
        calls, spent = app.session_calls, agent.budget_state().budget.settled
        print(
            f"tuiagent: session {agent.state.run_id}: {money(spent)} in "
            f"{calls} call{'s' * (calls != 1)}; log {agent.log.path}"
        )
    return app.return_code or 0
