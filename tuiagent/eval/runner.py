"""Running a suite: every task, `repeat` times, in every arm, in parallel under one cap.

Each run is an ordinary run (its log, its transcript) in a fresh copy of the task's
workspace, its run_start tagged with the suite, the task, the arm and the repeat. Every
run and every judge call spends from one Budget (one ledger hold per call, against the
eval's one cap), so `--max-cost` bounds the whole eval: a run whose call no longer fits
halts as any run at its cap does, and the summary says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tuiagent.agent.call import CallSpec, Retries
from tuiagent.agent.experiment import call_once, exact_request
from tuiagent.agent.loop import Agent
from tuiagent.agent.router import RouteDecision
from tuiagent.agent.run_records import new_run_id, run_scopes
from tuiagent.agent.tools import Toolbox
from tuiagent.apikey import api_key
from tuiagent.config import Settings
from tuiagent.cost.budget import Budget, open_run_budget
from tuiagent.eval.checks import check_request, file_states, parse_check
from tuiagent.eval.suite import Suite, Task
from tuiagent.runs.log import LogWriteError
from tuiagent.runs.outcome import outcome
from tuiagent.runs.records import HaltReason
from tuiagent.session import connect, open_session


@dataclass(frozen=True)
class ArmPlan:
    """An arm with the settings its runs use."""

    name: str
    settings: Settings


@dataclass
class RunResult:
    task: Task
    arm: str
    repeat: int
    run_id: str = ""
    status: str = ""
    halt_reason: str | None = None
    answer: str | None = None
    checks: dict[str, bool] = field(default_factory=dict)  # check name -> passed
    reasons: dict[str, str] = field(default_factory=dict)  # why a check failed (or passed)
    simulated: bool = False

    @property
    def passed(self) -> bool:
        """Completed with an answer, and every check held."""
        return self.answer is not None and all(self.checks.values())


@dataclass
class EvalRun:
    """What `run_suite` did: each run's result, the judge's run, the eval's budget."""

    eval_id: str
    results: list[RunResult]
    budget: Budget
    judge_run_id: str | None = None
    notice: str | None = None

    @property
    def run_ids(self) -> list[str]:
        ids = [r.run_id for r in self.results if r.run_id]
        return ids + ([self.judge_run_id] if self.judge_run_id else [])


def _special(folder: str, names: list[str]) -> list[str]:
    """Names that are neither files, folders nor symlinks (a FIFO would block the copy)."""
    skip = []
    for name in names:
        try:
            mode = os.lstat(os.path.join(folder, name)).st_mode
        except OSError:
            skip.append(name)
            continue
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
            skip.append(name)
    return skip


def _fresh_workspace(task: Task, into: Path) -> Path:
    ws = into / "workspace"
    if task.workspace is None:
        ws.mkdir()
    else:
        shutil.copytree(task.workspace, ws, symlinks=True, ignore=_special)
    return ws


def _settings_for(arm: ArmPlan, task: Task) -> Settings:
    """The arm's settings for this task: its system prompt, edits allowed (in a copy)."""
    changes: dict[str, object] = {"allow_edits": True}
    if task.system_prompt is not None:
        changes.update(system_prompt=task.system_prompt, system_prompt_file=None)
    return arm.settings.with_changes(**changes)


async def _run_one(
    suite: Suite,
    arm: ArmPlan,
    task: Task,
    repeat: int,
    *,
    eval_id: str,
    budget: Budget,
    offline: bool,
) -> RunResult:
    result = RunResult(task, arm.name, repeat)
    with tempfile.TemporaryDirectory(prefix="tuiagent-eval-") as tmp:
        ws = _fresh_workspace(task, Path(tmp))
        before = file_states(ws, task.files_changed)
        session = open_session(
            _settings_for(arm, task),
            workspace=ws,
            offline=offline,
            budget=budget,
            workspace_label=task.workspace or suite.path.parent,
        )
        agent = session.agent
        result.run_id, result.simulated = agent.state.run_id, agent.simulated
        tag = {"suite": suite.name, "id": eval_id, "task": task.name, "arm": arm.name}
        agent.start(eval_of={**tag, "repeat": repeat})
        end = None
        try:
            async with contextlib.aclosing(agent.send(task.prompt)) as events:
                async for _ in events:
                    pass
            end = outcome(agent.state.halt_reason)
            result.answer = events.result().answer
        except LogWriteError:
            end = outcome(HaltReason.ERROR)
        except (asyncio.CancelledError, KeyboardInterrupt):
            end = outcome(HaltReason.INTERRUPTED)
            raise
        finally:
            ended = agent.finish(end or outcome(HaltReason.INTERRUPTED)).record
            result.status, result.halt_reason = ended.status, ended.halt_reason
        if task.answer_matches is not None:
            found = result.answer is not None and task.answer_matches.search(result.answer)
            result.checks["answer_matches"] = bool(found)
        if task.files_changed:
            after = file_states(ws, task.files_changed)
            same = [p for p in task.files_changed if before[p] == after[p]]
            result.checks["files_changed"] = not same
            if same:
                result.reasons["files_changed"] = f"not changed: {', '.join(same)}"
    return result


async def _judge_all(
    suite: Suite,
    results: list[RunResult],
    settings: Settings,
    *,
    eval_id: str,
    budget: Budget,
    offline: bool,
    log_dir: Path,
) -> str | None:
    """Each judged task's runs checked by one judge call each (deep tier), in a run of their
    own (purpose "judge"). A run with no answer fails its judge check without a call."""
    todo = [r for r in results if r.task.judge is not None]
    if not todo:
        return None
    conn = connect(settings, offline=offline)
    agent = Agent(
        settings, provider=conn.provider, toolbox=Toolbox(), log_dir=log_dir, budget=budget
    )
    agent.start(eval_of={"suite": suite.name, "id": eval_id, "task": None, "arm": "judge"})
    deep = settings.router.model_for("deep")
    retries = Retries(settings.run.max_retries)
    halted = None
    try:
        for r in todo:
            assert r.task.judge is not None
            if r.answer is None:
                r.checks["judge"], r.reasons["judge"] = False, "no answer to judge"
                continue
            agent.state.turns += 1
            request = check_request(deep, r.task.prompt, r.task.judge, r.answer)
            decision = RouteDecision("deep", deep, f"judge of {r.run_id}")
            spec = CallSpec(agent.state.turns, "judge", decision, exact_request(request))
            end = await call_once(agent, spec, retries)
            if end.result is None:
                r.checks["judge"] = False
                r.reasons["judge"] = f"not judged: {end.detail or 'the call failed'}"
                if not end.detail:
                    halted = HaltReason.MAX_COST
                continue
            r.checks["judge"], r.reasons["judge"] = parse_check(end.result.text)
    finally:
        agent.finish(outcome(halted))
    return agent.state.run_id


async def run_suite(
    suite: Suite,
    arms: list[ArmPlan],
    repeat: int,
    *,
    settings: Settings,
    offline: bool,
    log_dir: Path,
    parallel: int,
    on_done: Callable[[RunResult], None] = lambda _: None,
) -> EvalRun:
    """Every task `repeat` times in every arm, at most `parallel` at once, all within
    `settings`' cap; then the judge checks. `on_done` hears each run as it ends."""
    eval_id = new_run_id()
    simulated = offline or api_key() is None
    budget = open_run_budget(
        settings, run_scopes(eval_id, eval_id, simulated), what=f"tuiagent eval {eval_id}"
    )
    gate = asyncio.Semaphore(parallel)

    async def one(arm: ArmPlan, task: Task, n: int) -> RunResult:
        async with gate:
            r = await _run_one(suite, arm, task, n, eval_id=eval_id, budget=budget, offline=offline)
        on_done(r)
        return r

    try:
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(one(arm, task, n))
                    for arm in arms
                    for task in suite.tasks
                    for n in range(1, repeat + 1)
                ]
        except BaseExceptionGroup as group_error:
            raise _first(group_error) from None
        results = [t.result() for t in tasks]
        judge_run = await _judge_all(
            suite,
            results,
            settings,
            eval_id=eval_id,
            budget=budget,
            offline=offline,
            log_dir=log_dir,
        )
    finally:
        budget.close()
    return EvalRun(eval_id, results, budget, judge_run)


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error a run raised (a ledger out of reach, a full disk), for the CLI's one line."""
    error = group.exceptions[0]
    return _first(error) if isinstance(error, BaseExceptionGroup) else error
