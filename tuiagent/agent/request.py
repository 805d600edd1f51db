"""One request: the user's message (or going on with one a limit halted) worked on until the
answer or a limit, route -> call -> tools -> compress; a failed fast-tier step redone one
tier up (`Escalation`).

`Request` is its home: where its message sits in the history, the turn it began at, its
prompt and the classifier's tier for it, its retries, its escalation, what it spent. It
streams its events (agent/stream.py), then its `RequestEnd`. It works with the parts the
Agent (agent/loop.py) hands it, each named: the run's state, the conversation, the metered
call, the context manager, the tool runner, the router, the place its records go.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tuiagent.agent.call import Caller, CallSpec, Retries
from tuiagent.agent.context import ContextManager
from tuiagent.agent.conversation import Conversation, RunState, replayable
from tuiagent.agent.events import Answered, Halted, Notice, UserMessage
from tuiagent.agent.mcp import McpTools
from tuiagent.agent.protocol import Approver, RequestEnd
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
from tuiagent.agent.run_records import Place
from tuiagent.agent.stream import EventStream, Steps
from tuiagent.agent.tool_step import ToolRunner
from tuiagent.config import Settings
from tuiagent.llm.tokens import estimate_request_tokens, estimate_tokens
from tuiagent.runs.records import Answer as AnswerRecord
from tuiagent.runs.records import HaltReason
from tuiagent.runs.records import UserMessage as UserRecord


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
    caller: Caller  # the metered call (budget, ledger, cache, provider)
    context: ContextManager  # clearing and compaction before each call
    tools: ToolRunner  # a step's tool calls
    router: Router
    place: Place  # where its records go
    steering: Steering


class Request(EventStream[RequestEnd]):
    """One request's home (see the module doc)."""

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
        self.start_turn, self.spent_before = state.turns, parts.caller.ledger.spent
        self.escalation = Escalation(enabled=self.steering.tier == "auto")
        if self.message is not None:
            prompt = self.message
            self.message_at = len(state.history)
            state.history.append({"role": "user", "content": [{"type": "text", "text": prompt}]})
            record = UserRecord(text=prompt, tokens=estimate_tokens(prompt))
            yield UserMessage(parts.place.write(record))
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
            self.parts.caller.ledger.spent - self.spent_before,
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
                f"this request used its {max_turns} model calls (max_turns); "
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
            costs = self.mcp.costs(end.record, parts.conversation.toolbox.definitions())
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
        caller, budget, ledger = parts.caller, parts.caller.budget, parts.caller.ledger
        turns = len(ledger.turn_costs)
        expected_output = (
            ledger.usage.output_tokens // turns if turns else DEFAULT_EXPECTED_OUTPUT_TOKENS
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
