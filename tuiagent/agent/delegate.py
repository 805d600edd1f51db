"""Sub-agents: the `delegate` tool hands mechanical work to cheap workers, in parallel.

Each task runs as a sub-agent: an `Agent` of its own with a short conversation (the task,
not the parent's history), the read-only workspace tools, the fast tier unless the task
asks otherwise, and a budget slice of the parent's (`Budget.slice`). A slice is never more
than what is left: a task gets min(its max_cost_usd, what is left / (tasks not yet
finished + 1)), the one share kept back being the parent's, to combine the results with.
Every hold a sub-agent makes is held by the parent's budget too, so all of them together
can never pass the session's cap. At most `max_parallel_agents` work at once.

Its calls go through the metered call like any other and are written to the run's one log,
each record carrying `agent` ("a1", "a2", ...), `parent_agent`, `parent_turn` and `task`;
an `agent` record closes each sub-agent with how it ended and what it spent. The tool's
result is every sub-agent's final answer (or why it stopped, with what it had), which the
parent's loop compresses like any large result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from tuiagent.agent.events import (
    BudgetChanged,
    Event,
    EventStream,
    LogRecord,
    Notice,
    Steps,
    SubAgentChanged,
    SubAgentEnded,
    TurnFinished,
    TurnStarted,
)
from tuiagent.agent.loop import Agent
from tuiagent.agent.protocol import RequestEnd
from tuiagent.agent.tools import Tool, Toolbox, ToolError, ToolOutput
from tuiagent.config import TIERS
from tuiagent.runs.log import utc_now_iso
from tuiagent.runs.outcome import COMPLETED, ERROR, outcome
from tuiagent.runs.records import SubAgentEnd

DELEGATE_TOOL = "delegate"
# What a worker may use: reading the workspace, never acting on the world or delegating.
WORKER_TOOLS = ("list_dir", "read_file", "search_files")
MAX_TASKS = 32
WORKER_NOTE = (
    "[tuiagent:worker] You are a worker sub-agent: do the one task below with the tools and answer it "
    "briefly. Your answer goes back to the agent that delegated the task, not to the user."
)

# Offered on every call of the parent, so kept short (about 210 tokens by the local estimate).
DELEGATE_DESCRIPTION = (
    "Run independent tasks (read, search, summarise files) as parallel sub-agents on a "
    "cheaper model, each on a share of the budget. A task must stand alone: its sub-agent "
    "sees only it. Returns each answer."
)
# A task is its text, or an object when it asks for a tier or a cap: the model writes the
# tool's input at output speed and price, so the common case is the short one.
DELEGATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tasks": {
            "type": "array",
            "items": {
                "anyOf": [
                    {"type": "string"},
                    {
                        "type": "object",
                        "properties": {
                            "task": {"type": "string"},
                            "tier": {"enum": list(TIERS)},
                            "max_cost_usd": {"type": "number"},
                        },
                        "required": ["task"],
                    },
                ]
            },
        }
    },
    "required": ["tasks"],
}


@dataclass(frozen=True)
class SubTask:
    task: str
    tier: str = "fast"
    max_cost_usd: Decimal | None = None


@dataclass
class SubResult:
    """How one sub-agent ended: completed | stopped | failed | interrupted."""

    agent: str
    task: SubTask
    state: str = "queued"
    reason: str | None = None  # the limit that stopped it (max_cost, max_turns, ...)
    detail: str = ""
    answer: str = ""
    turns: int = 0
    spent: Decimal = Decimal(0)
    slice_usd: Decimal = Decimal(0)

    def header(self) -> str:
        """What the parent needs to read on: the state, and for a sub-agent that did not
        finish what it spent of its slice (the tier, turns and spend of each are in its
        records and the Agents panel, not in every later call of the parent)."""
        how = self.state + (f" ({self.reason})" if self.reason else "")
        if self.state != "completed":
            how += f", ${self.spent:.6f} of ${self.slice_usd:.6f}"
        return f"[{self.agent} {how}] {self.task.task}"

    def text(self) -> str:
        parts = [self.header()]
        if self.detail:
            parts.append(f"{self.state}: {self.detail}")
        if self.answer:
            parts.append(
                self.answer if self.state == "completed" else f"what it had: {self.answer}"
            )
        elif self.state != "completed":
            parts.append("(no answer)")
        return "\n".join(parts)


def parse_tasks(args: dict[str, Any]) -> list[SubTask]:
    """The tool's input as tasks; a ToolError names what is wrong."""
    raw = args.get("tasks")
    if not isinstance(raw, list) or not raw:
        raise ToolError(
            "tasks must be a non-empty list of task texts or {task, tier?, max_cost_usd?}"
        )
    if len(raw) > MAX_TASKS:
        raise ToolError(f"at most {MAX_TASKS} tasks per call, got {len(raw)}")
    tasks = []
    for i, item in enumerate(raw, 1):
        if isinstance(item, str):
            item = {"task": item}
        if not isinstance(item, dict):
            raise ToolError(f"task {i} must be a text or an object with a task, got {item!r}")
        text = item.get("task")
        if not isinstance(text, str) or not text.strip():
            raise ToolError(f"task {i}: task must be a non-empty string")
        tier = item.get("tier") or "fast"
        if tier not in TIERS:
            raise ToolError(f"task {i}: tier must be one of {', '.join(TIERS)}, got {tier!r}")
        cost = item.get("max_cost_usd")
        limit = None
        if cost is not None:
            try:
                limit = Decimal(str(cost))
            except InvalidOperation:
                limit = None
            if isinstance(cost, bool) or limit is None or not limit.is_finite() or limit <= 0:
                raise ToolError(f"task {i}: max_cost_usd must be a positive number, got {cost!r}")
        tasks.append(SubTask(text.strip(), tier, limit))
    return tasks


def last_answer(history: list[dict[str, Any]]) -> str:
    """The text of the last assistant message: what a sub-agent has to show."""
    for message in reversed(history):
        if message.get("role") != "assistant":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content.strip()
        text = "".join(
            b.get("text", "")
            for b in content or []
            if isinstance(b, dict) and b.get("type") == "text"
        ).strip()
        if text and text != "(no answer)":
            return text
    return ""


class Delegator:
    """The parent's delegate tool: runs its tasks as sub-agents and reports as they work."""

    def __init__(self, parent: Agent) -> None:
        self.parent = parent
        self.started = 0  # sub-agents started in this run: ids a1, a2, ...
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def tool(self) -> Tool:
        return Tool(
            DELEGATE_TOOL,
            DELEGATE_DESCRIPTION,
            DELEGATE_SCHEMA,
            self._run_quietly,
            stream=self.run,
        )

    async def _run_quietly(self, args: dict[str, Any]) -> str:
        """The tool run without its events (Toolbox.call)."""
        run = self.run(args)
        async for _ in run:
            pass
        output = run.result()
        if output.is_error:
            raise ToolError(output.text.removeprefix("error: "))
        return output.text

    def stop(self, agent_id: str) -> bool:
        """Stop one running sub-agent (the others and the parent go on)."""
        task = self._tasks.get(agent_id)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    def _worker(self, agent_id: str, sub: SubTask, amount: Decimal) -> Agent:
        parent = self.parent
        settings = parent.settings.with_changes(
            tier=sub.tier,
            max_cost_usd=amount,
            subagents=False,
            keep_warm=False,
            router_classifier=False,
            system_prompt=f"{parent.system_prompt}\n\n{WORKER_NOTE}",
            system_prompt_file=None,
        )
        tools = Toolbox({n: t for n, t in parent.toolbox.tools.items() if n in WORKER_TOOLS})
        return Agent(
            settings,
            provider=parent.provider,
            toolbox=tools,
            log_dir=parent.log.path.parent,
            budget=parent.budget.slice(amount, agent_id),
            parent=parent,
            agent_id=agent_id,
            task=sub.task,
        )

    def run(self, args: dict[str, Any]) -> EventStream[ToolOutput]:
        """The sub-agents' events as they work, then the tool's output."""
        return EventStream(lambda out: self._run(out, args))

    async def _run(self, out: EventStream[ToolOutput], args: dict[str, Any]) -> Steps:
        try:
            subs = parse_tasks(args)
        except ToolError as exc:
            out.set_result(ToolOutput(f"error: {exc}", is_error=True))
            return
        parent = self.parent
        results = []
        for sub in subs:
            self.started += 1
            results.append(SubResult(f"a{self.started}", sub))
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        gate = asyncio.Semaphore(parent.settings.tools.max_parallel_agents)
        unfinished = len(results)

        def status(r: SubResult, worker: Agent | None = None) -> SubAgentChanged:
            in_flight = Decimal(0)
            if worker is not None:
                r.turns = max(r.turns, worker.state.turns)
                r.spent = worker.budget.settled
                in_flight = worker.budget.in_flight
            return SubAgentChanged(
                r.agent, r.task.task, r.task.tier, r.state, r.turns, r.spent, in_flight,
                r.slice_usd, r.detail,
            )  # fmt: skip

        async def work(r: SubResult) -> None:
            nonlocal unfinished
            try:
                async with gate:
                    await self._work(r, unfinished, queue, status)
            except asyncio.CancelledError:  # stopped while it waited for its turn
                r.state, r.detail = "interrupted", "stopped before it started"
                queue.put_nowait(status(r))
            finally:
                unfinished -= 1
                queue.put_nowait(None)

        for r in results:
            queue.put_nowait(status(r))
        tasks = [asyncio.create_task(work(r), name=f"sub-agent {r.agent}") for r in results]
        self._tasks.update({r.agent: t for r, t in zip(results, tasks, strict=True)})
        try:
            done = 0
            while done < len(tasks):
                item = await queue.get()
                if item is None:
                    done += 1
                else:
                    yield item
        finally:
            # Stopped from outside (Escape, Ctrl-C) or done: every sub-agent ends here, its
            # calls accounted by the metered call before this returns.
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for r in results:
                self._tasks.pop(r.agent, None)
        yield BudgetChanged(parent.budget.snapshot())
        out.set_result(
            ToolOutput(summary(results), is_error=all(r.state == "failed" for r in results))
        )

    async def _work(
        self,
        r: SubResult,
        unfinished: int,
        queue: asyncio.Queue[Event | None],
        status: Callable[[SubResult, Agent | None], SubAgentChanged],
    ) -> None:
        parent = self.parent
        # The parent keeps one share to combine the results with.
        share = parent.budget.remaining / (unfinished + 1)
        amount = share if r.task.max_cost_usd is None else min(share, r.task.max_cost_usd)
        started_at = utc_now_iso()
        worker: Agent | None = None
        finished: RequestEnd | None = None  # how its request ended
        errors: list[str] = []
        try:
            worker = self._worker(r.agent, r.task, amount)
            r.slice_usd, r.state = worker.budget.cap, "running"
            queue.put_nowait(status(r, worker))
            request = worker.send(r.task.task)
            async with aclosing(request):
                async for event in request:
                    if isinstance(event, LogRecord):  # its records: user, turn, tool, attempt
                        queue.put_nowait(event)
                        if isinstance(event, TurnFinished):
                            # Its state counts the turn once the call returns: count it now.
                            r.turns = max(r.turns, event.record.turn)
                            queue.put_nowait(status(r, worker))
                    elif isinstance(event, TurnStarted):
                        queue.put_nowait(status(r, worker))
                    elif isinstance(event, BudgetChanged):
                        queue.put_nowait(BudgetChanged(parent.budget.snapshot()))
                    elif isinstance(event, Notice):
                        if event.level == "error":
                            errors.append(event.text)
                        queue.put_nowait(Notice(f"{r.agent}: {event.text}", event.level))
            finished = request.result()
        except asyncio.CancelledError:
            r.state, r.detail = "interrupted", "stopped before it finished"
        except Exception as exc:  # a failing sub-agent must not fail the parent
            r.state, r.detail = "failed", f"{type(exc).__name__}: {exc}"
        else:
            assert worker is not None and finished is not None
            reason = worker.state.halt_reason
            end = outcome(reason).status
            if end == COMPLETED:
                r.state = "completed"
            elif end == ERROR:
                r.state, r.detail = "failed", "; ".join(errors) or "the call failed"
            else:
                r.state, r.reason = "stopped", reason
                halted = finished.halted
                r.detail = halted.detail if halted is not None else str(reason)
        finally:
            if worker is not None:
                r.answer = last_answer(worker.state.history)
                queue.put_nowait(status(r, worker))
                parent.state.subagent_turns += r.turns
                ended = worker.write(
                    SubAgentEnd(
                        status=r.state,
                        halt_reason=r.reason,
                        detail=r.detail,
                        tier=r.task.tier,
                        turns=r.turns,
                        cost_usd=r.spent,
                        slice_usd=r.slice_usd,
                        started_at=started_at,
                        ended_at=utc_now_iso(),
                    )
                )
                queue.put_nowait(SubAgentEnded(ended))
                worker.transcript.messages(worker.state.history)
                worker.transcript.close()
            else:
                queue.put_nowait(status(r, None))


def summary(results: list[SubResult]) -> str:
    """The tool result: a line of totals, then each sub-agent's answer under its header."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.state] = counts.get(r.state, 0) + 1
    states = ", ".join(f"{n} {state}" for state, n in counts.items())
    spent = sum((r.spent for r in results), Decimal(0))
    head = f"{len(results)} sub-agent{'' if len(results) == 1 else 's'} ({states}), ${spent:.6f} in all"
    return "\n\n".join([head, *(r.text() for r in results)])
