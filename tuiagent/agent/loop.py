"""The agent loop: route -> call -> tools -> compress, until the answer or a limit.

It yields typed events (agent/events.py) and writes the run log, so the headless runner and
the UI consume the same stream and neither holds agent logic. Every model call, and all of
its money, is the metered call's (agent/call.py); the request it sends is built from the
conversation (agent/conversation.py); where its records go, a sub-agent's too, and the
run's first and last records are agent/records.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import anthropic

from tuiagent.agent import conversation, helpers, records
from tuiagent.agent.call import CallEnd, Caller, CallSpec
from tuiagent.agent.compress import Compressor, result_ids_in
from tuiagent.agent.context import ContextManager
from tuiagent.agent.edits import Editor, EditPreview
from tuiagent.agent.escalation import Escalation
from tuiagent.agent.events import (
    Answered,
    BudgetChanged,
    ContextEdited,
    Event,
    Halted,
    Notice,
    RunEnded,
    RunStarted,
    TurnFinished,
    UserMessage,
)
from tuiagent.agent.mcp import McpTools
from tuiagent.agent.protocol import AgentSnapshot
from tuiagent.agent.router import (
    DEFAULT_EXPECTED_OUTPUT_TOKENS,
    RouteDecision,
    Router,
    tools_so_far,
)
from tuiagent.agent.tool_step import run_tool_calls
from tuiagent.agent.tools import Toolbox, ToolError
from tuiagent.config import TIERS, Settings
from tuiagent.cost.budget import Budget, open_run_budget
from tuiagent.cost.budget import BudgetChanged as BudgetSnapshot
from tuiagent.cost.ledger import Ledger
from tuiagent.cost.pricing import Pricer
from tuiagent.errors import UsageError
from tuiagent.llm.caching import CacheTracker
from tuiagent.llm.tokens import estimate_request_tokens, estimate_tokens
from tuiagent.runs.log import LogWriteError, R
from tuiagent.runs.outcome import Outcome, outcome
from tuiagent.runs.records import Answer as AnswerRecord
from tuiagent.runs.records import HaltReason
from tuiagent.runs.records import UserMessage as UserRecord
from tuiagent.runs.transcript import Resumable

T = TypeVar("T")


@dataclass
class RunState:
    run_id: str
    turns: int = 0
    subagent_turns: int = 0  # the turns of its sub-agents (agent/delegate.py), all told
    status: str | None = None
    halt_reason: HaltReason | None = None
    # Halted at the cap: the most the next call may cost (what raising the cap must leave).
    needed_usd: Decimal | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class _OnCaller(Generic[T]):
    """An attribute the metered call (agent.caller) keeps, read and set on the agent."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, agent: Agent, owner: type | None = None) -> T:
        return cast(T, getattr(agent.caller, self.name))

    def __set__(self, agent: Agent, value: T) -> None:
        setattr(agent.caller, self.name, value)


class Agent:
    """One run: a conversation with the model, its budget and its log."""

    state: RunState

    def __init__(
        self,
        settings: Settings,
        *,
        client: anthropic.AsyncAnthropic,
        provider: str,
        toolbox: Toolbox,
        log_dir: Path,
        run_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
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
        self.simulated = provider == "offline"
        self.toolbox = toolbox
        self.pricer = Pricer(settings.router.prices)
        for tier in TIERS:
            self.pricer.ensure_priced(settings.router.model_for(tier))
        self.max_turns = settings.run.max_turns
        self.tier = settings.router.tier
        self.system_prompt = settings.run.resolved_system_prompt()
        run_id = run_id or (parent.state.run_id if parent is not None else records.new_run_id())
        # The run's cap over the ledger every tuiagent process shares (a sub-agent's is a
        # slice of its parent's): opened before the log, so a ledger that cannot be reached
        # leaves no run behind.
        self.owns_budget = budget is None
        self.session = session or run_id  # a resumed run goes on with its session
        if budget is None:
            scopes = records.run_scopes(run_id, self.session, self.simulated)
            budget = open_run_budget(settings, scopes, what=f"tuiagent run {run_id}")
        self.budget = budget
        # Opened once the settings are known to be good: a bad one leaves no log behind.
        place = records.place_of(agent_id, log_dir=log_dir, run_id=run_id, parent=parent, task=task)
        self.identity, self.log, self.transcript = place.identity, place.log, place.transcript
        self.state = RunState(place.run_id)
        self.caller = Caller(
            settings,
            client=client,
            pricer=self.pricer,
            budget=self.budget,
            write=self.write,
            transcript=self.transcript,
            simulated=self.simulated,
            clock=clock,
            wall_clock=wall_clock,
            ledger=place.ledger,
        )
        # Asked before a tool that acts on the world runs (the UI shows a dialog); None: allow.
        # True runs it; False, or the user's reason as a string, declines it.
        self.approve: Callable[[str, dict[str, Any]], Awaitable[bool | str]] | None = None
        # Large tool results are compressed; the originals stay here for expand_result.
        self.compressor = Compressor(
            settings.tools.compress_over_tokens, on_keep=self.transcript.result
        )
        self.resumed_from: str | None = None  # the run whose conversation this one goes on
        self.mcp: McpTools | None = None  # the session's MCP servers (session.py adds them)
        self.editor: Editor | None = None  # write_file, edit_file and undo (session.py)
        if settings.tools.compress or settings.run.context_management:
            toolbox.add(self.compressor.expand_tool())
        # Clearing old results and compaction (agent/context.py); limits are per request.
        self.context = ContextManager(self, self.compressor)
        # The request being worked on (agent/conversation.py begins it).
        self.working = False  # inside a request (send / go_on)
        self.request_start = 0  # self.state.turns when the request began
        self.message_at: int | None = None  # where send() put the request's message
        self.prompt = ""  # the user's request being worked on, which the router reads
        self.classified: str | None = None  # the classifier's tier for it ("" for none)
        self.router = Router(
            settings.router.tiers,
            self.pricer,
            budget_floor=settings.router.budget_floor,
            rules=tuple(settings.router.rules),
        )
        self.ask_diagnostics = conversation.asks_diagnostics(self.simulated)

    # What the metered call keeps: spend, the prompt cache per model, its clocks.
    ledger: _OnCaller[Ledger] = _OnCaller()
    cache: _OnCaller[CacheTracker] = _OnCaller()
    wall_clock: _OnCaller[Callable[[], float]] = _OnCaller()
    sleep: _OnCaller[Callable[[float], Awaitable[None]]] = _OnCaller()

    def call(self, spec: CallSpec) -> AsyncGenerator[Event | CallEnd, None]:
        """The one metered call (agent/call.py): events, then one CallEnd."""
        return self.caller.call(spec)

    def resume(self, earlier: Resumable) -> None:
        """Go on with an earlier run's conversation: its messages, and its kept originals
        under their ids (written to this run's transcript too); new ids never reuse one."""
        self.state.history = list(earlier.messages)
        self.compressor.restore(earlier.results, seen=result_ids_in(earlier.messages))
        self.resumed_from = earlier.run_id

    # --- records -----------------------------------------------------------

    def write(self, record: R) -> R:
        """Write a record to the run log as this agent's (its run id and identity)."""
        record = self._own(record)
        self.log.append(record)
        return record

    def _own(self, record: R) -> R:
        return dataclasses.replace(record, run_id=self.state.run_id, **self.identity)

    def start(self, replay_of: dict[str, Any] | None = None) -> RunStarted:
        """Write run_start (a replay notes `replay_of`)."""
        return RunStarted(self.write(records.run_start(self, replay_of)))

    def finish(self, end: Outcome | None = None) -> RunEnded:
        """Write run_end: how the run ended (runs/outcome.py), by default from its halt
        reason. Closes the log and the transcript."""
        end = end or outcome(self.state.halt_reason)
        self.state.status, self.state.halt_reason = end.status, end.halt_reason
        if self.mcp is not None:
            self.mcp.close()
        record = self._own(records.run_end(self))
        # A disk that refuses it: the record waits in log.unwritten (the CLI says so).
        with contextlib.suppress(LogWriteError):
            self.log.append(record)
        self.log.close()
        with contextlib.suppress(LogWriteError):
            self.transcript.messages(self.state.history)  # the last answer, for replay
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
            self.tier,
            self.max_turns,
            budget,
            s.status,
            s.halt_reason,
            s.needed_usd if s.halt_reason == HaltReason.MAX_COST else None,
            self.caller.last_call,
        )

    def set_tier(self, tier: str) -> None:
        if tier not in ("auto", *TIERS):
            raise ValueError(f"unknown tier {tier!r}")
        self.tier = tier

    # --- routing and requests ------------------------------------------------

    def route(self, floor: tuple[str, str] | None = None) -> RouteDecision:
        """The tier for the next agent call and why (agent/router.py). `floor`: the lowest
        tier allowed, and why (after an escalation)."""
        turns = len(self.ledger.turn_costs)
        expected_output = (
            self.ledger.usage.output_tokens // turns if turns else DEFAULT_EXPECTED_OUTPUT_TOKENS
        )
        return self.router.choose(
            prompt=self.prompt,
            input_tokens=estimate_request_tokens(self.request_body()),
            cache=self.cache,
            now=self.wall_clock(),
            pin=self.tier,
            spent=self.budget.settled + self.budget.in_flight,
            cap=self.budget.cap,
            floor=floor[0] if floor else None,
            floor_reason=floor[1] if floor else "",
            expected_output_tokens=expected_output,
            classified=self.classified,
            tools_used=tools_so_far(self.state.history),
        )

    def request_body(self) -> dict[str, Any]:
        return conversation.request_body(self)

    def agent_request(self, model: str) -> dict[str, Any]:
        return conversation.agent_request(self, model)

    def keep_warm(self) -> AsyncGenerator[Event, None]:
        return helpers.keep_warm(self)

    # --- the loop ----------------------------------------------------------

    async def send(self, prompt: str) -> AsyncGenerator[Event, None]:
        """Work on one user message until the answer or a limit."""
        conversation.begin_request(self, prompt)
        yield UserMessage(self.write(UserRecord(text=prompt, tokens=estimate_tokens(prompt))))
        try:
            self._offer_edits()
            if self.mcp is not None:
                async with aclosing(self.mcp.start()) as started:
                    async for event in started:
                        yield event
            async for event in helpers.classify(self, prompt):
                yield event
            async with aclosing(self._work()) as events:
                async for event in events:
                    yield event
        finally:
            self.working = False

    async def go_on(self) -> AsyncGenerator[Event, None]:
        """Go on with the request a limit halted (after /turns N), with fresh limits."""
        conversation.begin_request(self)
        try:
            async with aclosing(self._work()) as events:
                async for event in events:
                    yield event
        finally:
            self.working = False

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

    def set_max_turns(self, turns: int) -> None:
        if turns < 1:
            raise ValueError("max_turns must be at least 1")
        self.max_turns = turns

    def clear_conversation(self) -> ContextEdited:
        """/clear: the next request starts with no earlier messages; the budget goes on."""
        return self.context.clear()

    def compact(self) -> AsyncGenerator[Event, None]:
        """/compact: summarise the conversation now."""
        return self.context.compact("asked for (/compact)")

    async def _work(self) -> AsyncGenerator[Event, None]:
        """Model calls and tools for the current request until the answer or a limit."""
        escalation = Escalation(enabled=self.tier == "auto")
        answered = False  # an agent call of this request completed
        while True:
            if self.state.turns - self.request_start >= self.max_turns:
                yield self._halt(
                    HaltReason.MAX_TURNS,
                    f"this request used its {self.max_turns} model calls (max_turns); "
                    "/turns N allows more and goes on",
                )
                return
            if self.mcp is not None:
                for event in self.mcp.check():
                    yield event
            async with aclosing(self.context.before_call()) as steps:
                async for event in steps:
                    yield event
            if (too_long := self.context.over_window()) is not None:
                yield self._halt(HaltReason.CONTEXT, too_long)
                return
            turn = self.state.turns + 1
            spec = CallSpec(
                turn,
                "agent",
                self.route(escalation.floor),
                self.agent_request,
                step_down=self.tier == "auto",
                escalated_from=escalation.started(),
                stream_text=True,
                conversation=True,
            )
            end: CallEnd | None = None
            finished: TurnFinished | None = None
            try:
                async with aclosing(self.call(spec)) as calls:
                    async for item in calls:
                        if isinstance(item, CallEnd):
                            end = item
                            continue
                        finished = item if isinstance(item, TurnFinished) else finished
                        yield item
            except (asyncio.CancelledError, KeyboardInterrupt, GeneratorExit):
                conversation.interrupted(self, turn)  # the call is accounted already
                raise
            assert end is not None
            if self.mcp is not None and finished is not None:
                content = end.result.content if end.result is not None else []
                costs = self.mcp.costs(finished.record, self.request_body(), content)
                if costs is not None:
                    yield costs
            if end.result is None:
                if (
                    end.reason == HaltReason.MAX_COST
                    and not answered
                    and self.message_at is not None
                ):
                    prompt = conversation.withdraw_message(self)
                    halt = self._halt(HaltReason.MAX_COST, end.detail, end.needed_usd)
                    yield dataclasses.replace(halt, withdrawn=prompt)
                elif end.reason in (HaltReason.MAX_COST, HaltReason.MAX_RETRIES):
                    yield self._halt(HaltReason(end.reason), end.detail, end.needed_usd)
                else:
                    self.state.halt_reason = HaltReason.ERROR
                return
            answered = True
            self.state.turns = turn
            result = end.result
            step_start = len(self.state.history)
            conversation.add_answer(self, result.content)
            tier = end.tier
            failed = escalation.failed_step(
                tier, result.text, result.stop_reason, bool(result.tool_uses)
            )
            if failed is None and (result.stop_reason != "tool_use" or not result.tool_uses):
                answer = AnswerRecord(turn=turn, text=result.text, stop_reason=result.stop_reason)
                yield Answered(self.write(answer))
                return
            results: list[dict[str, Any]] = []
            if failed is None:
                uses = result.tool_uses
                async with aclosing(run_tool_calls(self, turn, uses, escalation, tier)) as steps:
                    async for step in steps:
                        if isinstance(step, tuple):
                            results, failed = step
                        else:
                            yield step
            self.state.history.append({"role": "user", "content": results})
            if failed is not None:
                # Redo this step one tier up: the failed step leaves the conversation (its
                # cost and records stay), and the rest of the request stays at that tier.
                del self.state.history[step_start:]
                yield Notice(escalation.escalate(turn, tier, failed))
            else:
                escalation.step_done()

    def _halt(self, reason: HaltReason, detail: str, needed_usd: Decimal | None = None) -> Halted:
        self.state.halt_reason, self.state.needed_usd = reason, needed_usd
        return Halted(reason, detail, needed_usd=needed_usd)
