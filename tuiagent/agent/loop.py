"""The Agent: one run. It builds its parts once and hands each what it needs; each request
(agent/request.py) works with them until the answer or a limit.

A face steers it through agent/protocol.py: every request, compaction and keep-warm is an
event stream (agent/stream.py) the headless runner and the UI consume alike, so neither
holds agent logic. Every model call, and all of its money, is the metered call's
(agent/call.py); the request it sends is built from the conversation
(agent/conversation.py); where its records go, a sub-agent's too, is agent/run_records.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from tuiagent.agent import run_records
from tuiagent.agent.call import Call, Caller, CallSpec, Retries
from tuiagent.agent.compress import Compressor, result_ids_in
from tuiagent.agent.context import ContextManager
from tuiagent.agent.conversation import Conversation, RunState
from tuiagent.agent.edits import Editor, EditPreview
from tuiagent.agent.events import BudgetChanged, ContextEdited, RunEnded, RunStarted
from tuiagent.agent.mcp import McpTools
from tuiagent.agent.protocol import AgentSnapshot, Approver
from tuiagent.agent.request import Parts, Request, Steering
from tuiagent.agent.router import Router
from tuiagent.agent.run_records import Place, place_of, run_scopes
from tuiagent.agent.stream import EventStream
from tuiagent.agent.tool_step import ToolRunner
from tuiagent.agent.tools import Toolbox, ToolError
from tuiagent.config import TIERS, Settings
from tuiagent.cost.budget import Budget, open_run_budget
from tuiagent.cost.budget import BudgetChanged as BudgetSnapshot
from tuiagent.cost.ledger import Ledger
from tuiagent.cost.pricing import Pricer
from tuiagent.errors import UsageError
from tuiagent.llm.provider import Provider
from tuiagent.runs.log import LogWriteError, R, utc_now_iso
from tuiagent.runs.outcome import Outcome, outcome
from tuiagent.runs.records import HaltReason, Limits, RunEnd, RunStart
from tuiagent.runs.transcript import Resumable


class Agent:
    """One run: a conversation with the model, its budget and its log."""

    place: Place
    state: RunState
    ledger: Ledger

    def __init__(
        self,
        settings: Settings,
        *,
        provider: Provider,
        toolbox: Toolbox,
        log_dir: Path,
        run_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        budget: Budget | None = None,
        parent: Agent | None = None,
        agent_id: str = "main",
        task: str | None = None,
        session: str | None = None,
    ) -> None:
        """A sub-agent (agent/delegate.py) has a `parent`: it spends from `budget` (a slice
        of the parent's), writes to the parent's run log and ledger with its own identity
        on every record, and keeps its conversation in a transcript of its own."""
        self.settings = settings
        self.agent_id = agent_id
        self.provider = provider
        self.simulated = provider.simulated
        self.toolbox = toolbox
        self.pricer = Pricer(settings.router.prices)
        for tier in TIERS:
            self.pricer.ensure_priced(settings.router.model_for(tier))
        self.steering = Steering(settings.router.tier, settings.run.max_turns)
        self.system_prompt = settings.run.resolved_system_prompt()
        run_id = run_id or (parent.state.run_id if parent is not None else run_records.new_run_id())
        # The run's cap over the ledger every tuiagent process shares (a sub-agent's is a
        # slice of its parent's): opened before the log, so a ledger that cannot be reached
        # leaves no run behind.
        self.owns_budget = budget is None
        self.session = session or run_id  # a resumed run goes on with its session
        if budget is None:
            scopes = run_scopes(run_id, self.session, self.simulated)
            budget = open_run_budget(settings, scopes, what=f"tuiagent run {run_id}")
        self.budget = budget
        # Opened once the settings are known to be good: a bad one leaves no log behind.
        self.place = place_of(
            agent_id,
            log_dir=log_dir,
            run_id=run_id,
            parent=parent.place if parent is not None else None,
            parent_turn=parent.state.turns if parent is not None else 0,
            task=task,
        )
        self.log, self.transcript = self.place.log, self.place.transcript
        self.state = RunState(self.place.run_id)
        # A sub-agent books into its parent's ledger: run_end totals every agent.
        self.ledger = parent.ledger if parent is not None else Ledger()
        self.caller = Caller(
            settings,
            provider=provider,
            pricer=self.pricer,
            budget=self.budget,
            place=self.place,
            ledger=self.ledger,
            clock=clock,
            wall_clock=wall_clock,
            sleep=sleep,
        )
        self.cache = self.caller.cache  # the prompt cache per model, as the calls left it
        # Asked before a tool that acts on the world runs (the UI shows a dialog); None: allow.
        # True runs it; False, or the user's reason as a string, declines it.
        self.approve: Approver | None = None
        # Large tool results are compressed; the originals stay here for expand_result.
        self.compressor = Compressor(
            settings.tools.compress_over_tokens, on_keep=self.transcript.result
        )
        self.resumed_from: str | None = None  # the run whose conversation this one goes on
        self.mcp: McpTools | None = None  # the session's MCP servers (session.py adds them)
        self.editor: Editor | None = None  # write_file, edit_file and undo (session.py)
        if settings.tools.compress or settings.run.context_management:
            toolbox.add(self.compressor.expand_tool())
        self.conversation = Conversation(
            self.state, settings, self.system_prompt, toolbox, self.cache, simulated=self.simulated
        )
        # Clearing old results and compaction (agent/context.py); limits are per request.
        self.context = ContextManager(
            settings,
            self.state,
            self.conversation,
            self.caller,
            self.pricer,
            self.compressor,
            self.place,
        )
        self.tools = ToolRunner(settings, toolbox, self.compressor, self.caller, self.place)
        self.router = Router(
            settings.router.tiers,
            self.pricer,
            budget_floor=settings.router.budget_floor,
            rules=tuple(settings.router.rules),
        )
        self.parts = Parts(
            settings,
            self.state,
            self.conversation,
            self.caller,
            self.context,
            self.tools,
            self.router,
            self.place,
            self.steering,
        )
        self.request: Request | None = None  # the last request (go_on goes on with it)

    def resume(self, earlier: Resumable) -> None:
        """Go on with an earlier run's conversation: its messages, and its kept originals
        under their ids (written to this run's transcript too); new ids never reuse one."""
        self.state.history = list(earlier.messages)
        self.compressor.restore(earlier.results, seen=result_ids_in(earlier.messages))
        self.resumed_from = earlier.run_id

    def call(self, spec: CallSpec, retries: Retries | None = None) -> Call:
        """One metered call (agent/call.py): its events, then its CallEnd. Its retries count
        against `retries` (by default: `max_retries` of its own)."""
        retries = retries if retries is not None else Retries(self.settings.run.max_retries)
        return self.caller.call(spec, retries)

    # --- records -----------------------------------------------------------

    def write(self, record: R) -> R:
        """Write a record to the run log as this agent's (its run id and identity)."""
        return self.place.write(record)

    def start(self, replay_of: dict[str, Any] | None = None) -> RunStarted:
        """Write run_start (a replay notes `replay_of`)."""
        settings = self.settings
        start = RunStart(
            started_at=utc_now_iso(),
            provider=self.provider.name,
            simulated=self.simulated,
            models={t: settings.router.model_for(t) for t in TIERS},
            tier=self.steering.tier,
            limits=Limits(self.budget.cap, self.steering.max_turns, settings.run.max_tokens),
            replay_of=replay_of,
            resumed_from=self.resumed_from,
            session=self.session if self.session != self.state.run_id else None,
        )
        return RunStarted(self.write(start))

    def finish(self, end: Outcome | None = None) -> RunEnded:
        """Write run_end: how the run ended (runs/outcome.py), by default from its halt
        reason. Closes the log and the transcript."""
        end = end or outcome(self.state.halt_reason)
        state, ledger = self.state, self.ledger
        state.status, state.halt_reason = end.status, end.halt_reason
        if self.mcp is not None:
            self.mcp.close()
        u = ledger.usage
        record = self.place.own(
            RunEnd(
                ended_at=utc_now_iso(),
                status=state.status or "",
                halt_reason=state.halt_reason,
                turns=state.turns,
                subagent_turns=state.subagent_turns,
                total_cost_usd=ledger.spent,
                total_input_tokens=u.input_tokens,
                total_output_tokens=u.output_tokens,
                total_cache_read_input_tokens=u.cache_read_input_tokens,
                total_cache_creation_input_tokens=u.cache_creation_input_tokens,
                total_cache_creation_5m_input_tokens=u.cache_creation_5m_input_tokens,
                total_cache_creation_1h_input_tokens=u.cache_creation_1h_input_tokens,
                cost_without_cache_usd=ledger.cost_without_cache,
                saved_by_cache_usd=ledger.saved_by_cache,
                cache_hit_rate=round(ledger.cache_hit_rate, 4),
            )
        )
        # A disk that refuses it: the record waits in log.unwritten (the CLI says so).
        with contextlib.suppress(LogWriteError):
            self.log.append(record)
        self.log.close()
        with contextlib.suppress(LogWriteError):
            self.transcript.messages(state.history)  # the last answer, for replay
        self.transcript.close()
        if self.owns_budget:
            self.budget.close()  # settles are written; the lease is given up
        return RunEnded(record)

    # --- steering (the UI's keys and slash commands) -------------------------

    def set_cap(self, cap: Decimal) -> BudgetChanged:
        """Set the spending cap; never below settled + in flight. Returns the budget then.
        A request halted at the cap may go on once the cap is raised."""
        before = self.budget.cap
        if self.budget.set_cap(cap) > before and self.state.halt_reason == HaltReason.MAX_COST:
            self.state.halt_reason = None
        return self.budget_state()

    def watch_budget(self, listener: Callable[[BudgetSnapshot], None]) -> Callable[[], None]:
        """Hear every change of the run's budget (its sub-agents' holds included), in the
        thread that made it; returns a function that stops it."""
        return self.budget.subscribe(listener)

    def budget_state(self) -> BudgetChanged:
        return BudgetChanged(self.budget.snapshot())

    def snapshot(self) -> AgentSnapshot:
        """What a face shows of the agent now (agent/protocol.py)."""
        s = self.state
        budget = self.budget.snapshot()
        return AgentSnapshot(
            s.run_id,
            s.turns,
            self.steering.tier,
            self.steering.max_turns,
            budget,
            s.status,
            s.halt_reason,
            s.needed_usd if s.halt_reason == HaltReason.MAX_COST else None,
            self.caller.last_call,
        )

    def set_tier(self, tier: str) -> None:
        if tier not in ("auto", *TIERS):
            raise ValueError(f"unknown tier {tier!r}")
        self.steering.tier = tier

    def set_max_turns(self, turns: int) -> None:
        if turns < 1:
            raise ValueError("max_turns must be at least 1")
        self.steering.max_turns = turns

    # --- edits (write_file, edit_file: agent/edits.py) ---------------------------

    def _offer_edits(self) -> None:
        """The edit tools, once: in the app (which asks before each change) or headless
        with --allow-edits (the flag is the approval)."""
        editor = self.editor
        if editor is None or "write_file" in self.toolbox.tools:
            return
        if self.approve is not None or self.settings.tools.allow_edits:
            for tool in editor.tools():
                self.toolbox.add(tool)

    def undo(self, every: bool = False) -> list[str]:
        """/undo: put back the last change this run made to a file (or every change); a
        UsageError of one line when there is none, or the file changed since."""
        if self.editor is None:
            raise UsageError("this session makes no edits")
        try:
            return self.editor.undo(every)
        except (ToolError, OSError) as exc:
            raise UsageError(str(exc)) from None

    def preview_edit(self, name: str, arguments: dict[str, Any]) -> EditPreview | None:
        """What an edit call would change (the app shows it as a diff), or None for another
        tool or a call that cannot be made (it will fail with the reason)."""
        if self.editor is None or name not in ("write_file", "edit_file"):
            return None
        try:
            return self.editor.preview(name, arguments)
        except (ToolError, OSError):
            return None

    # --- requests ------------------------------------------------------------

    def send(self, prompt: str) -> Request:
        """Work on one user message until the answer or a limit: its events, then how it
        ended (a RequestEnd)."""
        self._offer_edits()
        self.request = self._request(prompt)
        return self.request

    def go_on(self) -> Request:
        """Go on with the request a limit halted (after /turns N), with fresh limits."""
        self.request = self._request(None)
        return self.request

    def _request(self, prompt: str | None) -> Request:
        return Request(
            self.parts, prompt, approve=self.approve, mcp=self.mcp, going_on=self.request
        )

    def clear_conversation(self) -> ContextEdited:
        """/clear: the next request starts with no earlier messages; the budget goes on."""
        return self.context.clear()

    def compact(self) -> EventStream[int]:
        """/compact: summarise the conversation now (the result: the turn numbers its call
        took, 0 or 1)."""
        retries = Retries(self.settings.run.max_retries)
        return self.context.compact("asked for (/compact)", retries, working=False)

    def keep_warm(self) -> EventStream[None]:
        """Idle: refresh the prompt cache before it expires, when that pays."""
        return self.context.keep_warm()
