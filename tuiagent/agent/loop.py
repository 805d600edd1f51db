"""The agent loop: one run (`Agent`) and one request (`Request`), route -> call -> tools ->
compress, until the answer or a limit.

The Agent builds its parts once and hands each what it needs. A `Request` is one request's
home: where its message sits in the history, the turn it began at, its prompt and the
classifier's tier for it, its retries, its escalation (a failed fast-tier step redone one
tier up), what it spent; it works with the parts it is handed, each by name (`Parts`).

A face steers the Agent through agent/protocol.py: every request, compaction and keep-warm
is an event stream (agent/events.py, EventStream: its events, then its result) that the
headless runner and the UI consume alike, so neither holds agent logic. Every model call,
and all of its money, is the metered call's (agent/call.py); the request it sends is built
from the conversation, and kept within the window, by agent/context.py; where its records
go, a sub-agent's too, are the call's (`Place`). A step's tool calls are `ToolRunner`'s,
here: each approved, run, compressed (or summarised) and logged; its result is the
tool_result blocks for the next request and the errors the tools gave (the request decides
what they mean).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tuiagent.agent.call import Call, Caller, CallSpec, Place, Retries, place_of, run_scopes
from tuiagent.agent.compress import (
    EXPAND_TOOL,
    Compressed,
    Compressor,
    result_ids_in,
    summary_request,
)
from tuiagent.agent.context import ContextManager, Conversation, RunState, replayable
from tuiagent.agent.edits import Editor, EditPreview
from tuiagent.agent.estimate import Estimate, History, estimate
from tuiagent.agent.events import (
    Answered,
    BudgetChanged,
    ContextEdited,
    EventStream,
    Halted,
    Notice,
    Prompted,
    RunEnded,
    RunStarted,
    Steps,
    ToolCallStarted,
    ToolFinished,
)
from tuiagent.agent.mcp import McpTools
from tuiagent.agent.protocol import AgentSnapshot, Approver, RequestEnd
from tuiagent.agent.router import (
    CLASSIFIER_PROMPT,
    DEFAULT_EXPECTED_OUTPUT_TOKENS,
    RouteDecision,
    Router,
    step_failure,
    step_up,
    tier_named,
    tools_so_far,
)
from tuiagent.agent.tools import Toolbox, ToolError, ToolOutput
from tuiagent.config import TIERS, Settings
from tuiagent.cost.budget import Budget, BudgetSnapshot, open_run_budget
from tuiagent.cost.pricing import Pricer, Spending
from tuiagent.errors import UsageError
from tuiagent.llm.provider import Provider
from tuiagent.llm.tokens import estimate_request_tokens, estimate_tokens
from tuiagent.runs.log import LogWriteError, R, utc_now_iso
from tuiagent.runs.log import new_run_id as new_run_id  # the run's id (a test's seam)
from tuiagent.runs.outcome import Outcome, outcome
from tuiagent.runs.records import Answer as AnswerRecord
from tuiagent.runs.records import HaltReason, Limits, RunEnd, RunStart, ToolCall, UserMessage
from tuiagent.runs.transcript import Resumable


@dataclass(frozen=True)
class ToolResults:
    """A step's tool calls, done: what the next request sends back, and each call that gave
    an error (its tool, its input, the error), in order."""

    blocks: list[dict[str, Any]]
    errors: list[tuple[str, dict[str, Any], str]]


class ToolRunner:
    """Runs an agent's tool calls: the toolbox's tools, their results compressed (originals
    kept for expand_result) or summarised by a helper call, each logged."""

    def __init__(
        self,
        settings: Settings,
        toolbox: Toolbox,
        compressor: Compressor,
        caller: Caller,
        place: Place,
    ) -> None:
        self.settings = settings
        self.toolbox = toolbox
        self.compressor = compressor
        self.caller = caller  # for summaries
        self.place = place

    def run(
        self,
        turn: int,
        uses: list[dict[str, Any]],
        approve: Approver | None,
        retries: Retries,
    ) -> EventStream[ToolResults]:
        """Run a step's tool calls in order (`approve` asked before a tool that acts on the
        world): their events, then their ToolResults."""
        return EventStream(lambda out: self._run(out, turn, uses, approve, retries))

    async def _run(
        self,
        out: EventStream[ToolResults],
        turn: int,
        uses: list[dict[str, Any]],
        approve: Approver | None,
        retries: Retries,
    ) -> Steps:
        blocks: list[dict[str, Any]] = []
        errors: list[tuple[str, dict[str, Any], str]] = []
        for use in uses:
            name, args = use["name"], use.get("input") or {}
            yield ToolCallStarted(turn, use["id"], name, args)
            tool = self.toolbox.tools.get(name)
            asks = tool is not None and tool.needs_approval and approve is not None
            answer = await approve(name, args) if asks and approve is not None else True
            if answer is not True:  # False, or the user's reason (the model reads it)
                why = f": {answer}" if isinstance(answer, str) and answer.strip() else ""
                output = ToolOutput(f"error: the user declined to run {name}{why}", is_error=True)
            elif tool is not None and tool.stream is not None:
                run = tool.stream(args)  # a tool that reports as it works (delegate)
                yield run
                output = run.result()
            else:
                output = await self.toolbox.call(name, args)
            summary = self._summary_call(name, output.text, turn, retries)
            summarized = None
            if summary is not None:
                yield summary
                end = summary.result()
                if end.result is None:
                    yield Notice(f"could not summarise the {name} result", "warning")
                elif end.result.text.strip():
                    summarized = end.result.text
            shown = self._shown(name, output.text, summarized)
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": use["id"],
                "content": shown.text,
            }
            if output.is_error:
                block["is_error"] = True
                errors.append((name, args, output.text))
            yield ToolFinished(
                self.place.write(
                    ToolCall(
                        turn=turn,
                        tool_use_id=use["id"],
                        name=name,
                        input=args,
                        ok=not output.is_error,
                        result_tokens=shown.compressed_tokens,
                        original_tokens=shown.original_tokens,
                        compressed_tokens=shown.compressed_tokens,
                        method=shown.method,
                        result_id=shown.result_id,
                        diff_lines=getattr(output, "diff_lines", None),
                    )
                ),
                output=shown.text,
                original=output.text,
            )
            blocks.append(block)
        out.set_result(ToolResults(blocks, errors))

    def _summary_call(self, tool: str, text: str, turn: int, retries: Retries) -> Call | None:
        """With summarize_results, a large result is summarised by a fast-tier call (None: it
        is not); the summariser reads a compressed form of a very large one."""
        settings, bound = self.settings.tools, self.compressor.over_tokens
        if not (settings.compress and settings.summarize_results) or tool == EXPAND_TOOL:
            return None
        tokens = estimate_tokens(text)
        if tokens <= bound:
            return None
        source = text
        if tokens > 20 * bound:
            compressed = Compressor(20 * bound).compress(tool, text).text
            source = (
                f"[compressed form of a {tokens:,}-token result]\n"
                + (compressed.split("\n", 1)[-1])
            )
        model = self.settings.router.model_for("fast")
        request = summary_request(model, tool, source, bound - 150)
        return self.caller.helper("summarize", request, turn, retries)

    def _shown(self, tool: str, text: str, summary: str | None) -> Compressed:
        """What the model sees of a tool result; a compressed one's original is kept."""
        if not self.settings.tools.compress:
            tokens = estimate_tokens(text)
            return Compressed(text, "none", tokens, tokens)
        if summary is not None:
            model = self.settings.router.model_for("fast")
            return self.compressor.summarized(tool, text, summary, model)
        return self.compressor.compress(tool, text)


@dataclass
class Escalation:
    """A failed fast-tier step (an empty answer, a refusal, the same tool error twice) is
    redone one tier up, once per request; the rest of the request stays at that tier."""

    enabled: bool  # only auto routing escalates
    floor: tuple[str, str] | None = None  # the lowest tier allowed now, and why
    redo_of: int | None = None  # the turn being redone
    _tool_errors: set[tuple[str, str, str]] = field(default_factory=set)

    def may_escalate(self, tier: str) -> bool:
        return self.enabled and tier == "fast" and self.floor is None

    def failed_step(self, tier: str, text: str, stop_reason: str | None, tools: bool) -> str | None:
        """Why this step failed, when it may be redone; None otherwise."""
        return step_failure(text, stop_reason, tools) if self.may_escalate(tier) else None

    def tool_error(self, tier: str, name: str, args: dict[str, Any], error: str) -> str | None:
        """ "the same tool error twice" when this error was seen before in the request."""
        seen = (name, json.dumps(args, sort_keys=True), error)
        repeated = seen in self._tool_errors and self.may_escalate(tier)
        self._tool_errors.add(seen)
        return "the same tool error twice" if repeated else None

    def escalate(self, turn: int, tier: str, failed: str) -> str:
        """Raise the floor one tier above `tier` for the redo; returns the notice text."""
        up = step_up(tier)
        self.floor, self.redo_of = (up, f"escalated: fast-tier turn {turn} gave {failed}"), turn
        return f"turn {turn} on the fast tier gave {failed}: redoing it on {up}"

    def step_done(self) -> None:
        """A step went through: after the redo, the floor stays, with its reason."""
        if self.floor is not None:
            self.floor = (self.floor[0], f"kept at {self.floor[0]} after the escalation")

    def started(self) -> int | None:
        """The turn this step redoes (once), or None."""
        redo, self.redo_of = self.redo_of, None
        return redo


@dataclass
class Steering:
    """What the user steers while the agent works (the UI's keys and slash commands): the
    tier pinned (or "auto") and the model calls a request may make. A request reads it at
    each step, so a change applies from the next call."""

    tier: str
    max_turns: int


@dataclass(frozen=True)
class Parts:
    """What a request works with: the agent's parts, each one thing."""

    settings: Settings
    state: RunState  # the run's turns, halt reason and history
    conversation: Conversation  # the request built from the history
    caller: Caller  # the metered call (budget, spending, cache, provider)
    context: ContextManager  # clearing and compaction before each call
    tools: ToolRunner  # a step's tool calls
    router: Router
    place: Place  # where its records go
    steering: Steering


class Request(EventStream[RequestEnd]):
    """One request's home (see the module doc): its events, then its RequestEnd."""

    prompt: str
    classified: str | None

    def __init__(
        self,
        parts: Parts,
        prompt: str | None,
        *,
        approve: Approver | None,
        mcp: McpTools | None = None,
        going_on: Request | None = None,
    ) -> None:
        """With a `prompt` (send), the user's message joins the history; without (go_on),
        the request a limit halted (`going_on`) goes on, with fresh limits."""
        super().__init__()
        self.parts = parts
        self.message = prompt  # None: going on
        self.steering, self.approve, self.mcp = parts.steering, approve, mcp
        # The user's request being worked on, which the router reads, and the classifier's
        # tier for it ("" when it named none); going on keeps the halted request's.
        self.prompt = prompt if prompt is not None else going_on.prompt if going_on else ""
        self.classified: str | None = going_on.classified if going_on and prompt is None else None
        self.retries = Retries(parts.settings.run.max_retries)
        self.escalation = Escalation(enabled=False)  # set when it begins
        self.start_turn = 0  # the run's turns when it began
        self.message_at: int | None = None  # where its message is in the history
        self.answered = False  # an agent call of this request completed
        self.spent_before = Decimal(0)
        self.ended: RequestEnd | None = None  # set by the step that ends it

    # --- its events -------------------------------------------------------------------

    async def steps(self) -> Steps:
        parts, state = self.parts, self.parts.state
        # Each request gets its own max_turns and max_retries; the cap is the session's.
        if state.halt_reason != HaltReason.ERROR:
            state.halt_reason = None  # a new attempt within the limits
        self.start_turn, self.spent_before = state.turns, parts.caller.spending.spent
        self.escalation = Escalation(enabled=self.steering.tier == "auto")
        if self.message is not None:
            prompt = self.message
            self.message_at = len(state.history)
            state.history.append({"role": "user", "content": [{"type": "text", "text": prompt}]})
            record = UserMessage(text=prompt, tokens=estimate_tokens(prompt))
            yield Prompted(parts.place.write(record))
            if self.mcp is not None:
                yield EventStream(self.mcp.start(asks=self.approve is not None))
            yield EventStream(self._classify())
        while self.ended is None:
            yield EventStream(self._step())
        self.set_result(self.ended)

    def _finish(self, answer: str | None, halted: Halted | None) -> None:
        state = self.parts.state
        self.ended = RequestEnd(
            answer,
            state.halt_reason,
            halted,
            state.turns - self.start_turn,
            self.parts.caller.spending.spent - self.spent_before,
        )

    def _halt(self, reason: HaltReason, detail: str, needed_usd: Decimal | None = None) -> Halted:
        state = self.parts.state
        state.halt_reason, state.needed_usd = reason, needed_usd
        return Halted(reason, detail, needed_usd=needed_usd)

    async def _step(self) -> Steps:
        """One step: the context kept in bounds, one agent call, its tool calls."""
        parts, state = self.parts, self.parts.state
        max_turns = self.steering.max_turns
        if state.turns - self.start_turn >= max_turns:
            halt = self._halt(
                HaltReason.MAX_TURNS,
                f"this request used its {max_turns} model call{'s' * (max_turns != 1)} "
                "(max_turns); "
                "/turns N allows more and goes on",
            )
            yield halt
            self._finish(None, halt)
            return
        if self.mcp is not None:
            for event in self.mcp.check():
                yield event
        context = parts.context.before_call(self.retries)
        yield context
        self.start_turn += context.result()  # a compaction's call is not one of the request's
        if (too_long := parts.context.over_window()) is not None:
            halt = self._halt(HaltReason.CONTEXT, too_long)
            yield halt
            self._finish(None, halt)
            return
        escalation = self.escalation
        turn = state.turns + 1
        spec = CallSpec(
            turn,
            "agent",
            self._route(escalation.floor),
            parts.conversation.request,
            step_down=self.steering.tier == "auto",
            escalated_from=escalation.started(),
            stream_text=True,
            conversation=True,
        )
        call = parts.caller.call(spec, self.retries)
        try:
            yield call
        except (asyncio.CancelledError, KeyboardInterrupt, GeneratorExit):
            # Stopped (Escape, Ctrl-C, a signal): the call is accounted already; it counts
            # as a turn, and what streamed stays in the conversation.
            state.turns = turn
            state.halt_reason = HaltReason.INTERRUPTED
            if call.streamed:
                state.history.append({"role": "assistant", "content": call.streamed})
            raise
        end = call.result()
        if self.mcp is not None and end.record is not None:
            said = end.result.content if end.result is not None else []
            costs = self.mcp.costs(end.record, parts.conversation.body(), said)
            if costs is not None:
                yield costs
        if end.result is None:
            halted: Halted | None = None
            if (
                end.reason == HaltReason.MAX_COST
                and not self.answered
                and self.message_at is not None
            ):
                halt = self._halt(HaltReason.MAX_COST, end.detail, end.needed_usd)
                halted = dataclasses.replace(halt, withdrawn=self._withdraw())
            elif end.reason in (HaltReason.MAX_COST, HaltReason.MAX_RETRIES):
                halted = self._halt(HaltReason(end.reason), end.detail, end.needed_usd)
            else:
                state.halt_reason = HaltReason.ERROR
            if halted is not None:
                yield halted
            self._finish(None, halted)
            return
        self.answered = True
        state.turns = turn
        result = end.result
        step_start = len(state.history)
        state.history.append({"role": "assistant", "content": replayable(result.content)})
        # In the transcript at once: replay compares with the answer as it was, even when a
        # compaction replaces it later.
        parts.place.transcript.messages(state.history)
        tier = end.tier
        failed = escalation.failed_step(
            tier, result.text, result.stop_reason, bool(result.tool_uses)
        )
        if failed is None and (result.stop_reason != "tool_use" or not result.tool_uses):
            answer = AnswerRecord(turn=turn, text=result.text, stop_reason=result.stop_reason)
            yield Answered(parts.place.write(answer))
            self._finish(result.text, None)
            return
        blocks: list[dict[str, Any]] = []
        if failed is None:
            tools = parts.tools.run(turn, result.tool_uses, self.approve, self.retries)
            yield tools
            blocks = tools.result().blocks
            for name, args, error in tools.result().errors:
                repeated = escalation.tool_error(tier, name, args, error)  # each one noted
                failed = failed or repeated
        state.history.append({"role": "user", "content": blocks})
        if failed is not None:
            # Redo this step one tier up: the failed step leaves the conversation (its cost
            # and records stay), and the rest of the request stays at that tier.
            del state.history[step_start:]
            yield Notice(escalation.escalate(turn, tier, failed))
        else:
            escalation.step_done()

    def _withdraw(self) -> str:
        """Nothing of this request's message reached the model: it leaves the conversation
        and goes back to the user (returned), to send once the cap is raised."""
        assert self.message_at is not None
        del self.parts.state.history[self.message_at :]
        return self.prompt

    # --- routing --------------------------------------------------------------------

    def _route(self, floor: tuple[str, str] | None) -> RouteDecision:
        """The tier for the next agent call and why (agent/router.py). `floor`: the lowest
        tier allowed, and why (after an escalation)."""
        parts = self.parts
        caller, budget, spending = parts.caller, parts.caller.budget, parts.caller.spending
        turns = len(spending.turn_costs)
        expected_output = (
            spending.usage.output_tokens // turns if turns else DEFAULT_EXPECTED_OUTPUT_TOKENS
        )
        return parts.router.choose(
            prompt=self.prompt,
            input_tokens=estimate_request_tokens(parts.conversation.body()),
            cache=caller.cache,
            now=caller.wall_clock(),
            pin=self.steering.tier,
            spent=budget.settled + budget.in_flight,
            cap=budget.cap,
            floor=floor[0] if floor else None,
            floor_reason=floor[1] if floor else "",
            expected_output_tokens=expected_output,
            classified=self.classified,
            tools_used=tools_so_far(parts.state.history),
        )

    async def _classify(self) -> Steps:
        """The optional classifier (config router_classifier): one fast-tier call naming the
        tier this request needs; when it fails or names no tier, the rules decide. Asked
        only when routing is automatic and the cap leaves room."""
        parts, prompt = self.parts, self.prompt
        caller = parts.caller
        if not parts.settings.router.classifier or self.steering.tier != "auto":
            return
        if caller.budget.remaining <= 0:
            return
        self.classified = ""
        decision = parts.router.choose(
            prompt=prompt,
            input_tokens=0,
            cache=caller.cache,
            now=caller.wall_clock(),
            pin=self.steering.tier,
            purpose="classify",
        )
        request = {
            "model": decision.model,
            "max_tokens": 5,
            "system": CLASSIFIER_PROMPT,
            "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
        }
        turn = parts.state.turns + 1
        call = caller.helper("classify", request, turn, self.retries, decision.reason)
        yield call
        if (result := call.result().result) is not None:
            self.classified = tier_named(result.text)


class Agent:
    """One run: a conversation with the model, its budget and its log."""

    place: Place
    state: RunState
    spending: Spending

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
        of the parent's), writes to the parent's run log and spending with its own identity
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
        run_id = run_id or (parent.state.run_id if parent is not None else new_run_id())
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
        # A sub-agent books into its parent's spending: run_end totals every agent.
        self.spending = parent.spending if parent is not None else Spending()
        self.caller = Caller(
            settings,
            provider=provider,
            pricer=self.pricer,
            budget=self.budget,
            place=self.place,
            spending=self.spending,
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
        self.workspace: str | None = None  # where its tools work (run_start notes it)
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
        self._history: History | None = None  # earlier messages, for estimates

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

    def start(
        self, replay_of: dict[str, Any] | None = None, eval_of: dict[str, Any] | None = None
    ) -> RunStarted:
        """Write run_start (a replay notes `replay_of`, a run of an eval suite `eval_of`)."""
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
            eval=eval_of,
            workspace=self.workspace,
        )
        return RunStarted(self.write(start))

    def finish(self, end: Outcome | None = None) -> RunEnded:
        """Write run_end: how the run ended (runs/outcome.py), by default from its halt
        reason. Closes the log and the transcript."""
        end = end or outcome(self.state.halt_reason)
        state, spending = self.state, self.spending
        state.status, state.halt_reason = end.status, end.halt_reason
        if self.mcp is not None:
            self.mcp.close()
        u = spending.usage
        record = self.place.own(
            RunEnd(
                ended_at=utc_now_iso(),
                status=state.status or "",
                halt_reason=state.halt_reason,
                turns=state.turns,
                subagent_turns=state.subagent_turns,
                total_cost_usd=spending.spent,
                total_input_tokens=u.input_tokens,
                total_output_tokens=u.output_tokens,
                total_cache_read_input_tokens=u.cache_read_input_tokens,
                total_cache_creation_input_tokens=u.cache_creation_input_tokens,
                total_cache_creation_5m_input_tokens=u.cache_creation_5m_input_tokens,
                total_cache_creation_1h_input_tokens=u.cache_creation_1h_input_tokens,
                cost_without_cache_usd=spending.cost_without_cache,
                saved_by_cache_usd=spending.saved_by_cache,
                cache_hit_rate=round(spending.cache_hit_rate, 4),
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
            self._waiting(),
            self.caller.last_call,
        )

    def _waiting(self) -> HaltReason | None:
        """The limit the last request stopped at partway (go_on goes on with it), or None."""
        ended = self.request.ended if self.request is not None else None
        halted = ended.halted if ended is not None else None
        return halted.reason if halted is not None and halted.withdrawn is None else None

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

    async def estimate(self, prompt: str, history: History | None = None) -> Estimate:
        """What sending `prompt` now would cost (agent/estimate.py), sent nowhere: its first
        call, and the whole message's range from this workspace's earlier messages (of
        `history`, by default this run's log dir and its own messages)."""
        if history is None:
            if self._history is None:
                ws = Path(self.workspace or ".")
                self._history = History(self.log.path.parent, ws, own=self.log.path)
            history = self._history
        await asyncio.to_thread(history.load)  # the log dir, read once: not on the loop
        return await estimate(
            prompt,
            history,
            state=self.state,
            conversation=self.conversation,
            router=self.router,
            caller=self.caller,
            pin=self.steering.tier,
        )

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
        """/clear: the next request starts with no earlier messages; the budget goes on. A
        halted request goes with its conversation: nothing is left to go on with."""
        self.request = None
        return self.context.clear()

    def compact(self) -> EventStream[int]:
        """/compact: summarise the conversation now (the result: the turn numbers its call
        took, 0 or 1)."""
        retries = Retries(self.settings.run.max_retries)
        return self.context.compact("asked for (/compact)", retries, working=False)

    def keep_warm(self) -> EventStream[None]:
        """Idle: refresh the prompt cache before it expires, when that pays."""
        return self.context.keep_warm()
