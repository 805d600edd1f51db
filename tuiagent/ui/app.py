"""The app: chat with the agent and watch the money, live.

The screen opens at once; the SDK (over a second to import) is imported by a worker after
the first frame. The app holds the agent's interface (agent/protocol.py), never the
`Agent`: it runs the agent's event streams in an exclusive worker and hands each event to
the widgets that show its kind (ui/agent_events.py); it steers with the interface's
methods. Escape cancels the worker; the agent keeps what streamed and counts its cost. The
budget it shows is one state read from the agent's Budget (ui/budget.py). Its commands are
one table (ui/commands.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on, work
from textual.app import App
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker

from tuiagent.config import TIER_CHOICES, Settings, parse_money
from tuiagent.errors import ConfigError, TuiagentError, UsageError
from tuiagent.exit_codes import exit_for_signal
from tuiagent.paths import default_log_dir, ui_state_file, user_themes_dir
from tuiagent.redact import redact
from tuiagent.ui.agent_events import EventRoutes, every_agent
from tuiagent.ui.budget import BudgetState, MeteredApp
from tuiagent.ui.commands import (
    CommandsProvider,
    bindings,
    check_keymap,
    help_markdown,
    parse_slash,
    system_markdown,
)
from tuiagent.ui.format import money
from tuiagent.ui.messages import SessionFailed, SessionOpened
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
    from tuiagent.agent.events import AttemptFailed, Event, Halted, Notice, TurnFinished
    from tuiagent.agent.protocol import AgentControl
    from tuiagent.offline import OfflineModel
    from tuiagent.runs.records import Turn
    from tuiagent.session import Session
    from tuiagent.ui.widgets.tools import ToolResultsPanel

# The offline model's pace in the app when the config does not set one: a lifelike stream.
APP_OFFLINE_TOKENS_PER_SECOND = 80.0
REPORT_RUNS = 20  # the report screen covers this many recent runs
KEEP_WARM_TICK_S = 15.0  # how often an idle app lets the agent weigh a cache refresh
ESTIMATE_PAUSE_S = 0.4  # a pause in typing this long asks for the message's estimate


@dataclass
class Tally:
    """What one message has cost so far: its calls (a sub-agent's too) and failed attempts."""

    calls: int = 0
    cost: Decimal = Decimal(0)


class TuiagentApp(MeteredApp):
    CSS_PATH = ["app.tcss", "screens/main.tcss"]  # noqa: RUF012
    TITLE = "tuiagent"
    COMMANDS: ClassVar = App.COMMANDS | {CommandsProvider}
    BINDINGS = bindings()

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
        super().__init__(step=settings.ui.budget_step_usd, keymap=settings.ui.keymap)
        self.settings = settings  # never changed in place: a change is a copy
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
        self.agent: AgentControl | None = None  # the session's agent, through its interface
        self._estimate_timer: Timer | None = None  # the pause after typing, for the estimate
        self.queue: list[str] = []
        self.turn_worker: Worker[None] | None = None
        self.finished = False
        self.session_calls = 0  # model calls completed in this session (said on quit)
        self.stop_signal: int | None = None  # SIGTERM/SIGHUP before mount (_signals_noted)
        self.message = Tally()  # what the message being answered has cost so far
        self.events = EventRoutes()  # who shows which of the agent's events
        self.main = MainScreen(
            events=self.events, clock=clock, on_ready=self._screen_ready, key=self.key
        )
        self._theme_problems: list[str] = []
        self._load_themes()
        self.set_reactive(TuiagentApp.budget, self.read_budget())

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
        if self.settings.ui.keymap:  # each bindings change recomposes the footer
            self.set_keymap(self.settings.ui.keymap)
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:  # end as a quit does: the same records
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._stop_by_signal, int(sig))
        if self.stop_signal is not None:  # one came while the app was starting
            self._stop_by_signal(self.stop_signal)

    def _stop_by_signal(self, signum: int) -> None:
        self.run_worker(self.quit(exit_for_signal(signum)), group="quit", exclusive=True)

    def _screen_ready(self) -> None:
        gc.enable()  # run_app held it off till the first frame
        self.events.subscribe(self)  # after the panels: the toasts come last
        if self.settings.cache.keep_warm:
            self.set_interval(KEEP_WARM_TICK_S, self._keep_warm_tick)
        self.main.set_tier(self.settings.router.tier)
        if self.pick_resume:
            self._pick_session()
            return
        # After the frame with the panels (the first is on the terminal already): the SDK
        # import would contend with it.
        self.call_after_refresh(self.open_session)

    def _pick_session(self) -> None:
        """`--resume` without an id: the picker of recent sessions, then the session."""
        from tuiagent.runs.recent import recent_sessions
        from tuiagent.ui.screens.resume import Picked, ResumeScreen

        sessions = recent_sessions(self.settings.run.log_dir or default_log_dir())
        if not sessions:
            self.main.chat.add_notice("no earlier session to resume: a new one starts")
            self.open_session()
            return

        def chosen(picked: Picked | None) -> None:
            picked = picked or Picked(None, "")  # (dismissed with nothing: a new session)
            self.resume = picked.transcript
            # What was typed at the picker, before what was typed since it closed.
            self.main.input.show(picked.draft + self.main.input.text)
            self.open_session()

        # What is in the input already (typed before the picker showed) is the start of the
        # message the picker keeps.
        draft = self.main.input.text
        self.main.input.clear()
        self.push_screen(ResumeScreen(sessions, draft), callback=chosen)

    def _remember_theme(self, theme: Any) -> None:
        write_state(self.state_path, theme=theme.name)

    @work(thread=True, exclusive=True, group="session", exit_on_error=False)
    def open_session(self) -> None:
        """Import the SDK and build the agent off the UI thread: the first frame never waits.

        No collections meanwhile: what the SDK and the agent make lives as long as the app,
        and each collection would scan it all, the app's objects too, holding the screen
        (and typed keys) while it runs. Once built, everything moves out of the collector's
        way (frozen), so a collection while an answer streams scans only what is new."""
        gc.disable()
        try:
            from tuiagent.session import open_session

            opened_with = self.settings
            session = open_session(
                opened_with,
                workspace=self.workspace,
                offline=self.offline,
                clock=self.agent_clock,
                offline_model=self.offline_model,
                resume=self.resume,
            )
        except TuiagentError as exc:
            self.post_message(SessionFailed(str(exc)))
            return
        finally:
            gc.freeze()
            gc.enable()
        resumed = self.resume.stem if self.resume is not None else None
        self.post_message(SessionOpened(session, resumed, opened_with))

    @on(SessionFailed)
    def _session_failed(self, message: SessionFailed) -> None:
        self.main.set_status("not started")
        self.main.chat.add_notice(f"cannot start: {message.error}", "error")
        self.notify(message.error, title="Cannot start", severity="error")

    @on(SessionOpened)
    def _session_opened(self, message: SessionOpened) -> None:
        from tuiagent.cost.pricing import context_window
        from tuiagent.offline import OFFLINE_NOTICE

        session = self.session = message.session
        from tuiagent.ui.screens.dialogs import Approvals

        agent: AgentControl = session.agent
        self.agent = agent
        agent.approve = Approvals(self).ask  # its dialog, and what the user allows always
        if message.settings is not self.settings:  # a cap, tier or /turns set while it opened
            agent.set_cap(self.settings.run.max_cost_usd)
            agent.set_tier(self.settings.router.tier)
            agent.set_max_turns(self.settings.run.max_turns)
        agent.start()
        if not self.is_running:  # it opened as the app closes: the run ends with nothing shown
            return
        agent.watch_budget(self.budget_changed)
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
        if session.history:
            self.main.chat.show_history(session.history)
            self.main.chat.add_notice(
                f"resumed run {message.resumed_from}: {len(session.history)} messages; "
                f"this session's spending starts at $0 against its own cap",
            )
        self.main.set_status(f"run {agent.snapshot().run_id}")
        self.show_budget()
        self._send_next()

    @property
    def busy(self) -> bool:
        return self.turn_worker is not None and not self.turn_worker.is_finished

    # --- the budget (ui/budget.py): the agent's, or the settings' till it opens ---------

    def read_budget(self) -> BudgetState:
        if self.agent is None:
            return BudgetState(self.settings.run.max_cost_usd)
        now = self.agent.snapshot()
        return BudgetState.of(now.budget, now.halt_reason, now.needed_usd)

    def put_cap(self, amount: Decimal) -> Decimal:
        if self.agent is None:
            self.settings = self.settings.with_changes(max_cost_usd=amount)
            return amount
        return self.agent.set_cap(amount).budget.cap

    def set_cap(self, amount: Decimal) -> None:
        was_at_cap = self.budget.at_cap
        super().set_cap(amount)
        agent = self.agent
        raised = was_at_cap and not self.budget.at_cap and not self.busy
        # As the halt said: raised, a request the cap stopped partway goes on.
        if raised and agent is not None and agent.snapshot().waiting == "max_cost":
            self.turn_worker = self.drive(agent, agent.go_on())
        self._send_next()  # halted at the cap, a message may wait for it

    # --- sending -------------------------------------------------------------------

    @on(ChatInput.Changed)
    def _typed(self, _: ChatInput.Changed) -> None:
        """Typing: the estimate waits for a pause (ESTIMATE_PAUSE_S), so keys stay fast."""
        if self._estimate_timer is not None:
            self._estimate_timer.stop()
        self._estimate_timer = self.set_timer(ESTIMATE_PAUSE_S, self._estimate_typed)

    def _typed_text(self) -> str | None:
        """The input's text, or None once the main screen's input is gone (quitting)."""
        found = self.main.query(ChatInput)
        return found.first().text.strip() if found else None

    def _estimate_typed(self) -> None:
        text = self._typed_text()
        if text is None:
            return
        if not text or text.startswith("/") or self.agent is None or self.busy:
            self.main.show_estimate("")
            return
        self.estimate(self.agent, text)

    @work(exclusive=True, group="estimate", exit_on_error=False)
    async def estimate(self, agent: AgentControl, text: str) -> None:
        """The agent's estimate of `text` (computed in the core: agent/estimate.py), shown
        under the input while the input still holds it."""
        try:
            found = await agent.estimate(text)
        except TuiagentError as exc:
            line = f"no estimate: {exc}"
        else:
            line = found.short()
        if self._typed_text() == text and not self.busy:
            self.main.show_estimate(line)

    @on(ChatInput.Submitted)
    async def _submitted(self, message: ChatInput.Submitted) -> None:
        self.main.show_estimate("")
        text = message.text
        chat_input = self.main.input
        if text.startswith("/"):
            await self.run_slash(text)
            return
        if self.budget.at_cap:
            self.notify(
                f"The cap is reached: raise it ({self.key('cap_up')} or /budget) to send.",
                title="Halted",
                severity="error",
            )
            chat_input.give_back(text)  # nothing is lost
            return
        self.main.chat.follow()  # the user looks for what they sent
        self.queue.append(text)
        self._send_next()
        chat_input.show_queue(len(self.queue))

    def _send_next(self) -> None:
        """The next queued message, once the agent is free and not halted at the cap (the
        next call's worst case does not fit what is left until the cap is raised)."""
        if self.agent is None or self.busy or not self.queue or self.budget.at_cap:
            return
        text = self.queue.pop(0)
        self.main.input.show_queue(len(self.queue))
        self.main.chat.add_user(text)
        self.turn_worker = self.drive(self.agent, self.agent.send(text))

    @work(exclusive=True, group="agent", exit_on_error=False)
    async def drive(self, agent: AgentControl, events: AsyncGenerator[Event, None]) -> None:
        """Show the agent's events as they come; a failure is a notice, never a crash."""
        screen = self.main
        self.message = Tally()
        # Esc: the stopped call's record (None: no call was streaming).
        stopped: Turn | None = None
        interrupted = False
        try:
            # Each event is shown (deliver never waits) before the next is asked for, so
            # Esc cancels the worker only while it waits inside the agent, where the call in
            # flight is settled; closed at once when stopped: it is accounted there and then.
            async with contextlib.aclosing(events) as stream:
                async for event in stream:
                    self.events.deliver(event)
        except asyncio.CancelledError:
            interrupted = True
            last = agent.snapshot().last_call
            if last is not None and last.stop_reason == "interrupted":
                stopped = last
                self.message.calls += 1
                self.message.cost += last.cost_usd
            # Shown after this worker is gone (it is cancelled), before the notices below.
            self.call_later(screen.interrupted, stopped)
            raise
        except Exception as exc:  # a failed turn is a notice, never a crash
            text = redact(str(exc))
            screen.chat.add_notice(f"error: {text}", "error")
            self.notify(text, title="Error", severity="error")
        finally:
            self.show_budget()  # settled in the call's finally
            screen.set_status(f"run {agent.snapshot().run_id}")
            self.call_later(screen.chat.close_answer)
            if interrupted:  # under what streamed before Esc
                self.call_later(
                    screen.chat.add_notice,
                    "interrupted: what streamed stays; its cost counts "
                    f"({money(stopped.cost_usd, 5)})"
                    if stopped
                    else "interrupted",
                )
            tally = self.message
            if tally.calls or tally.cost:
                self.call_later(
                    screen.chat.add_subtotal,
                    f"this message {money(tally.cost)} in {tally.calls} "
                    f"call{'s' * (tally.calls != 1)}, session {money(self.budget.settled)}",
                )
            self.call_later(self._send_next)
            self.call_later(self.refresh_bindings)  # F6 shows while halted at max_turns

    # --- the agent's events the app itself shows (ui/agent_events.py) --------------------

    @every_agent
    def when_turn_finished(self, event: TurnFinished) -> None:
        self.message.calls += 1
        self.message.cost += event.record.cost_usd
        self.session_calls += 1

    @every_agent
    def when_attempt_failed(self, event: AttemptFailed) -> None:
        self.message.cost += event.record.cost_usd

    def when_halted(self, event: Halted) -> None:
        self.show_budget()  # the gauge says which limit, and what goes on
        self.notify(event.detail, title="Halted", severity="error")

    def when_notice(self, event: Notice) -> None:
        if event.level == "error":
            self.notify(event.text, title="Error", severity="error")

    def _keep_warm_tick(self) -> None:
        """Idle: the agent decides whether refreshing the cache before it expires pays."""
        if self.agent is not None and not self.busy and self.settings.cache.keep_warm:
            self.keep_warm(self.agent)

    @work(exclusive=True, group="agent", exit_on_error=False)
    async def keep_warm(self, agent: AgentControl) -> None:
        async with contextlib.aclosing(agent.keep_warm()) as events:
            async for event in events:
                self.events.deliver(event)

    # --- ending ---------------------------------------------------------------------

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
        from tuiagent.runs.outcome import outcome

        agent = self.agent
        if agent is None or self.finished:
            return
        self.finished = True
        agent.finish(outcome(agent.snapshot().halt_reason))

    # --- the commands (ui/commands.py): keys, the palette and slash commands ----------

    async def run_slash(self, text: str) -> None:
        command, name, arg = parse_slash(text)
        if command is None:
            self.notify(f"unknown command {name}: try /help", severity="error")
        else:
            await self.run_action(command.action(arg))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """F6 is in the footer (and the palette) only while a request is halted at max_turns;
        Esc leaves it then (nothing runs to stop), so an 80-column footer holds every key.
        F5 (the main screen's panels) and F8 (the report) are offered where the main screen
        shows (under a dialog too), not over a screen of its own: on the report, F5 did
        nothing and F8 opened a second report over it."""
        if action in ("toggle_panels", "report"):
            shown = next((s for s in reversed(self.screen_stack) if not s.is_modal), None)
            return shown is self.main  # under its dialogs and the palette too
        if action in ("go_on", "interrupt"):
            halted = self.budget.halt == "max_turns" and not self.busy
            return halted if action == "go_on" else not halted
        return True

    def set_tier(self, tier: str) -> None:
        if self.agent is None:
            self.settings = self.settings.with_changes(tier=tier)
        else:
            self.agent.set_tier(tier)
        self.main.set_tier(tier)

    def action_cycle_tier(self) -> None:
        current = (
            self.agent.snapshot().tier if self.agent is not None else self.settings.router.tier
        )
        order = list(TIER_CHOICES)
        self.set_tier(order[(order.index(current) + 1) % len(order)])

    def action_interrupt(self) -> None:
        if self.busy and self.turn_worker is not None:
            self.turn_worker.cancel()
        elif self.queue:
            self.queue.clear()
            self.main.input.show_queue(0)
            self.main.chat.add_notice("queued messages dropped")

    def action_toggle_panels(self) -> None:
        self.main.cycle_view()

    def action_report(self) -> None:
        """The report screen over the recent runs of this log dir (this session included)."""
        from tuiagent.report.build import build_report
        from tuiagent.ui.screens.report import ReportScreen

        log_dir = self.settings.run.log_dir or default_log_dir()
        try:
            report = build_report(log_dir, last=REPORT_RUNS, top=10)
        except TuiagentError as exc:
            self.notify(str(exc), title="Report", severity="warning")
            return
        self.push_screen(ReportScreen(report))

    def action_go_on(self) -> None:
        """Go on with a request halted by max_turns (F6), with a fresh allowance."""
        agent = self.agent
        if agent is None or self.busy or agent.snapshot().waiting != "max_turns":
            return
        self.turn_worker = self.drive(agent, agent.go_on())

    async def action_quit(self) -> None:
        await self.quit(0)

    def action_budget(self, arg: str = "") -> None:
        try:
            self.set_cap(parse_money(arg, "/budget"))
        except ConfigError as exc:
            self.notify(f"{exc} (e.g. /budget 2.50)", severity="error")

    def action_tier(self, arg: str = "") -> None:
        if arg not in TIER_CHOICES:
            self.notify(f"/tier must be one of {', '.join(TIER_CHOICES)}", severity="error")
        else:
            self.set_tier(arg)

    def action_clear(self) -> None:
        """/clear: a new conversation in the same session; the budget goes on."""
        agent = self.agent
        if agent is not None and self.busy:
            self.notify(
                f"/clear waits till the agent is free ({self.key('interrupt')} stops it)",
                severity="warning",
            )
            return
        self.main.chat.clear_chat()
        if agent is None:
            return
        edited = agent.clear_conversation()
        self.events.deliver(edited)
        self.main.chat.add_notice(
            f"new conversation: the next request has no earlier messages "
            f"({edited.record.messages_before} cleared); "
            f"{money(agent.snapshot().budget.settled, 4)} spent so far counts against the "
            "same cap"
        )

    def action_compact(self) -> None:
        if self.agent is None or self.busy:
            self.notify("/compact waits till the agent is free", severity="warning")
        else:
            self.turn_worker = self.drive(self.agent, self.agent.compact())

    def action_undo(self, arg: str = "") -> None:
        """/undo (or /undo all): put back the agent's last change to a file (or all)."""
        agent = self.agent
        if agent is None or self.busy:
            self.notify("/undo waits till the agent is free", severity="warning")
            return
        try:
            lines = agent.undo(every=arg.strip() == "all")
        except TuiagentError as exc:  # nothing to undo, or the file changed since
            self.notify(str(exc), title="Not undone", severity="error")
            return
        for line in lines:
            self.main.chat.add_notice(line)

    def action_turns(self, arg: str = "") -> None:
        """/turns N: model calls allowed per request; a request halted there goes on."""
        try:
            turns = int(arg)
            if turns < 1:
                raise ValueError
        except ValueError:
            self.notify("/turns takes a whole number >= 1, e.g. /turns 40", severity="error")
            return
        if self.agent is None:
            self.settings = self.settings.with_changes(max_turns=turns)
        else:
            self.agent.set_max_turns(turns)
        self.notify(f"up to {turns} model calls per request", title="Turns")
        self.action_go_on()

    def action_system(self) -> None:
        """/system: the system prompt, its size and what it costs on every turn."""
        from tuiagent.llm.tokens import estimate_tokens

        s, session = self.settings, self.session
        try:
            prompt = session.system_prompt if session else s.run.resolved_system_prompt()
        except ConfigError as exc:
            self.notify(str(exc), severity="error")
            return
        costs = session.system_prompt_costs() if session else []
        text = system_markdown(s, estimate_tokens(prompt), costs)
        self.main.chat.add_answer(text, follow=True)
        # The prompt as exact text that wraps (a code block would cut its long lines).
        self.main.chat.add_notice(prompt, "quoted")

    def action_help(self) -> None:
        self.main.chat.add_answer(help_markdown(self.settings.ui.keymap), follow=True)

    def on_tool_results_panel_open_result(self, message: ToolResultsPanel.OpenResult) -> None:
        # By name, not @on: the panel's module stays off the start path (main.py loads it).
        from tuiagent.ui.screens.dialogs import ViewerScreen

        self.push_screen(ViewerScreen(message.result))


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _note_signals(app: TuiagentApp) -> None:
    """SIGTERM and SIGHUP only note themselves: the app acts on one at mount (before, its
    loop cannot), and after it ends run_end is written before the process goes."""

    def note(signum: int, frame: object) -> None:
        app.stop_signal = app.stop_signal or signum

    for sig in STOP_SIGNALS:
        signal.signal(sig, note)


@contextlib.contextmanager
def _signals_noted(app: TuiagentApp) -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    _note_signals(app)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def run_app(settings: Settings, *, workspace: Path, offline: bool, resume: str | None) -> int:
    """`tuiagent` with no subcommand. Bad input fails here, in one line, before the screen."""
    check_keymap(settings.ui.keymap)
    if not workspace.is_dir():
        raise UsageError(f"--workspace: {workspace} is not a directory")
    settings.run.resolved_system_prompt()  # a missing system_prompt_file is named before the screen
    if settings.offline.tokens_per_second == 0:
        settings = settings.with_changes(offline_tokens_per_second=APP_OFFLINE_TOKENS_PER_SECOND)
    if resume:
        from tuiagent.runs.recent import find_resume

        path = find_resume(settings.run.log_dir or default_log_dir(), resume)
    else:
        path = None
    # No collections till the first frame is up (_screen_ready): starting makes many objects
    # and frees few, so a collection then scans them for nothing.
    gc.disable()
    try:
        app = TuiagentApp(
            settings, workspace=workspace, offline=offline, resume=path, pick_resume=resume == ""
        )
        with _signals_noted(app):
            try:
                app.run()
            finally:
                _note_signals(app)  # the loop's handlers went with it: run_end is written first
                app.finish_run()
    finally:
        gc.enable()
    if app.agent is not None and app.session is not None:
        now = app.agent.snapshot()  # the session's total, on the terminal the app gave back
        calls = app.session_calls
        print(
            f"tuiagent: session {now.run_id}: {money(now.budget.settled)} in "
            f"{calls} call{'s' * (calls != 1)}; log {app.session.log_path}"
        )
    return app.return_code or 0
