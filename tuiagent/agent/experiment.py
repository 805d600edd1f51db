"""Tier experiments: replay every agent turn of runs on another model, judge each turn,
and suggest router rules from what held.

Each agent turn is resent from the exact request it had (its transcript), on the target,
through the metered call and one Budget for the whole experiment, so `--max-cost` caps
the replays and the judge calls together. The experiment is a run of its own (run_start
notes `replay_of`); its replayed calls are logged with purpose "replay", the judge's with
purpose "judge".

Verdicts: a turn that called tools is judged by comparing the calls (no model needed); an
answer by a judge call on the deep tier. The offline model judges by word overlap, and the
result says it is simulated.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from tuiagent.agent.call import CallEnd, CallSpec, Retries
from tuiagent.agent.loop import Agent
from tuiagent.agent.router import RouteDecision, request_words, rule_matches, tools_so_far
from tuiagent.agent.tools import Toolbox
from tuiagent.config import TIERS, RouterRule, Settings
from tuiagent.cost.budget import estimated_with_margin, plan_reservation
from tuiagent.cost.display import cap as show_cap
from tuiagent.cost.pricing import ZERO, Pricer
from tuiagent.errors import LimitError, TuiagentError, UsageError
from tuiagent.llm.provider import ModelConnection
from tuiagent.llm.tokens import TokenUsage, estimate_request_tokens
from tuiagent.runs.layout import RunFile, list_runs, select_runs
from tuiagent.runs.outcome import outcome
from tuiagent.runs.records import ExperimentResult, HaltReason, ProxyTurn, ReplayedTurn, Turn
from tuiagent.runs.transcript import sent_requests

VERDICTS = ("same", "acceptable", "worse")
KEEPS = ("same", "acceptable")  # verdicts under which the cheaper model would have done
# The judge prompt's marker (the offline model recognises it and judges by word overlap).
JUDGE_MARKER = "[tuiagent:judge]"
JUDGE_SYSTEM = (
    f"{JUDGE_MARKER} You compare a replayed answer with the original answer to the same "
    "request. Reply with one line: a verdict, a colon, and a reason of at most 15 words. "
    "Verdicts: same (the answers agree in substance), acceptable (different wording or "
    "detail, but as useful to the user), worse (wrong, missing facts, or less useful)."
)
JUDGE_MAX_TOKENS = 120
_VERDICT_LINE = re.compile(r"^\W*(same|acceptable|worse)\b\W*(.*)$", re.IGNORECASE)


@dataclass
class SourceTurn:
    """One agent turn of a source run, ready to replay."""

    run_id: str
    turn: int
    tier: str
    model: str
    cost: Decimal
    usage: TokenUsage
    request: dict[str, Any]
    answer: list[dict[str, Any]] | None  # None: not kept in the transcript
    prompt: str  # the user's request this turn worked on
    tools_before: tuple[str, ...]  # tools called for that request before this turn

    @property
    def input_estimate(self) -> int:
        """The request's size as the router estimates it (rules compare with this)."""
        return estimate_request_tokens(self.request)


@dataclass
class TurnResult:
    source: SourceTurn
    tier: str
    model: str
    cost: Decimal = ZERO
    content: list[dict[str, Any]] | None = None
    verdict: str | None = None
    reason: str = ""
    judge_cost: Decimal = ZERO
    error: str | None = None

    @property
    def kept(self) -> bool:
        """The cheaper model did as well: same or acceptable."""
        return self.verdict in KEEPS and self.error is None

    def row(self) -> ReplayedTurn:
        s = self.source
        return ReplayedTurn(
            run_id=s.run_id,
            turn=s.turn,
            original_tier=s.tier,
            original_model=s.model,
            original_cost_usd=s.cost,
            replay_tier=self.tier,
            replay_model=self.model,
            replay_cost_usd=self.cost,
            verdict=self.verdict,
            reason=self.reason,
            judge_cost_usd=self.judge_cost,
            error=self.error,
        )


@dataclass
class ReplayEstimate:
    turns: int
    worst_case: Decimal  # every replay and judge call at its reservation
    expected: Decimal  # the original tokens at the target's prices (judge calls aside)
    judge_calls: int


@dataclass
class Experiment:
    sources: list[str]
    tier: str
    model: str
    results: list[TurnResult]
    skipped: list[SourceTurn]  # already on the target: nothing to learn
    cap: Decimal
    spent: Decimal = ZERO
    run_id: str = ""
    log_path: Path | None = None
    halted: HaltReason | None = None
    simulated: bool = False
    notice: str | None = None

    @property
    def original_cost(self) -> Decimal:
        return sum((r.source.cost for r in self.results), ZERO)

    @property
    def replay_cost(self) -> Decimal:
        return sum((r.cost for r in self.results), ZERO)

    @property
    def judge_cost(self) -> Decimal:
        return sum((r.judge_cost for r in self.results), ZERO)

    @property
    def would_have_cost(self) -> Decimal:
        """The replayed turns with every same/acceptable one on the cheaper model."""
        return sum((r.cost if r.kept else r.source.cost for r in self.results), ZERO)

    @property
    def saving(self) -> Decimal:
        return self.original_cost - self.would_have_cost

    def record(self) -> ExperimentResult:
        """The experiment's record in the run log (for the report screen)."""
        return ExperimentResult(
            experiment_run_id=self.run_id,
            replay_of=self.sources,
            tier=self.tier,
            model=self.model,
            simulated=self.simulated,
            halted=self.halted,
            cap_usd=self.cap,
            turns=[r.row() for r in self.results],
            skipped_turns=[{"run_id": t.run_id, "turn": t.turn} for t in self.skipped],
            verdicts={v: sum(r.verdict == v for r in self.results) for v in VERDICTS},
            totals={
                "original_cost_usd": self.original_cost,
                "replay_cost_usd": self.replay_cost,
                "judge_cost_usd": self.judge_cost,
                "experiment_cost_usd": self.spent,
                "would_have_cost_usd": self.would_have_cost,
                "saving_usd": self.saving,
            },
        )

    def as_json(self) -> dict[str, Any]:
        """The experiment as `replay --all --json` prints it: its record's fields."""
        data = self.record().to_json()
        del data["type"], data["run_id"]
        return data


# --- the source turns --------------------------------------------------------


def _prompt_of(messages: list[dict[str, Any]]) -> str:
    """The latest user message that has text: the request this turn works on."""
    for message in reversed(messages):
        content = message.get("content")
        if message.get("role") != "user":
            continue
        if isinstance(content, str):
            return content
        texts = [b.get("text", "") for b in content or [] if b.get("type") == "text"]
        if texts:
            return " ".join(texts)
    return ""


def source_turns(run: RunFile) -> list[SourceTurn]:
    """Every agent turn of a run (or every call of a proxy run that answered) with its exact
    request and its answer."""
    records: list[Turn | ProxyTurn] = [
        c
        for c in run.calls
        if (isinstance(c, Turn) and c.purpose == "agent")
        or (isinstance(c, ProxyTurn) and c.type == "turn")
    ]
    if not records:
        raise UsageError(f"run {run.run_id} has no agent turns to replay")
    requests = sent_requests(run)
    turns = []
    for rec in records:
        number = rec.turn
        found = requests.get((number, rec.purpose or "agent"))
        if found is None:
            raise UsageError(f"the transcript of run {run.run_id} has no request for turn {number}")
        request = found.request
        sent = request.get("messages") or []
        turns.append(
            SourceTurn(
                run.run_id,
                number,
                (rec.tier if isinstance(rec, Turn) else rec.source) or "?",
                rec.model or "?",
                rec.cost_usd,
                rec.usage,
                request,
                found.answer,
                _prompt_of(sent),
                tools_so_far(sent),
            )
        )
    return turns


# --- judging -------------------------------------------------------------------


def _calls(content: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (str(b.get("name")), json.dumps(b.get("input") or {}, sort_keys=True))
        for b in content
        if b.get("type") == "tool_use"
    ]


def _text(content: list[dict[str, Any]]) -> str:
    return "\n".join(str(b.get("text", "")) for b in content if b.get("type") == "text").strip()


def _shown(calls: list[tuple[str, str]]) -> str:
    return ", ".join(f"{name} {args}" for name, args in calls[:3]) + (
        ", ..." if len(calls) > 3 else ""
    )


def compare_calls(original: list[dict[str, Any]], replay: list[dict[str, Any]]) -> tuple[str, str]:
    """(verdict, reason) of a turn where either side called tools: by the calls alone."""
    a, b = _calls(original), _calls(replay)
    if not a:
        return "worse", f"called {_shown(b)} where the original answered"
    if not b:
        return "worse", f"answered without the original's calls ({_shown(a)})"
    if a == b:
        return "same", f"the same tool calls ({_shown(a)})"
    if sorted(a) == sorted(b):
        return "same", "the same tool calls in another order"
    if all(a.count(c) <= b.count(c) for c in a):
        extra = [c for c in b if a.count(c) < b.count(c)]
        return "acceptable", f"the original's calls and {len(b) - len(a)} more ({_shown(extra)})"
    missing = [c for c in a if c not in b]
    return "worse", f"other tool calls: missing {_shown(missing)}"


def parse_verdict(answer: str) -> tuple[str, str]:
    for line in answer.splitlines():
        if m := _VERDICT_LINE.match(line.strip()):
            return m.group(1).lower(), m.group(2).strip()[:160] or "(no reason given)"
    return "worse", f"the judge named no verdict ({answer.strip()[:80]!r})"


def text_request(model: str, max_tokens: int, system: str, text: str) -> dict[str, Any]:
    """A one-message request (a judge's): the system prompt and one user text block."""
    return {
        "model": model,
        "max_tokens": max_tokens,
        "system": system,
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
    }


def judge_request(model: str, prompt: str, original: str, replay: str) -> dict[str, Any]:
    return text_request(
        model,
        JUDGE_MAX_TOKENS,
        JUDGE_SYSTEM,
        f"<request>\n{prompt}\n</request>\n<original>\n{original}\n"
        f"</original>\n<replay>\n{replay}\n</replay>",
    )


# --- planning --------------------------------------------------------------------


def load_turns(
    settings: Settings, log_dir: Path, run_ids: list[str], target: str
) -> tuple[list[SourceTurn], list[SourceTurn]]:
    """(turns to replay, turns already on the target) of the runs asked for."""
    runs = select_runs(list_runs(log_dir), run_ids=run_ids)
    turns = [t for run in runs for t in source_turns(run)]
    todo = [t for t in turns if t.model != target]
    if not todo:
        raise UsageError(
            f"every agent turn of {', '.join(r.run_id for r in runs)} already ran on {target}: "
            "replay on another tier or model"
        )
    return todo, [t for t in turns if t.model == target]


def estimate(
    settings: Settings, turns: list[SourceTurn], target: str, *, judge: bool, cap: Decimal
) -> ReplayEstimate:
    """What the experiment may cost at worst and is expected to cost; a LimitError when the
    cap does not fit even the first call (nothing is sent then)."""
    pricer = Pricer(settings.router.prices)
    deep = settings.router.model_for("deep")
    unlimited = Decimal(10) ** 9
    worst = expected = ZERO
    judge_calls = 0
    for i, t in enumerate(turns):
        request = {**t.request, "model": target}
        tokens = estimated_with_margin(estimate_request_tokens(request))
        if i == 0 and (
            plan_reservation(
                pricer, target, request, tokens, "estimate", cap, settings.run.min_useful_tokens
            )
            is None
        ):
            raise LimitError(
                f"the cap {show_cap(cap)} is less than one replayed turn could cost "
                f"({t.run_id} turn {t.turn} on {target}); raise --max-cost"
            )
        res = plan_reservation(
            pricer, target, request, tokens, "estimate", unlimited, settings.run.min_useful_tokens
        )
        assert res is not None
        worst += res.worst_case_usd
        expected += pricer.price(target, t.usage).total
        if judge and t.answer is not None and not _calls(t.answer):
            text = _text(t.answer)
            jr = judge_request(deep, t.prompt, text, text)
            jt = estimated_with_margin(estimate_request_tokens(jr))
            jres = plan_reservation(pricer, deep, jr, jt, "estimate", unlimited, 1)
            assert jres is not None
            worst += jres.worst_case_usd
            judge_calls += 1
    return ReplayEstimate(len(turns), worst, expected, judge_calls)


# --- the experiment ------------------------------------------------------------------


def target_of(settings: Settings, tier: str | None, model: str | None) -> tuple[str, str]:
    """(tier, model) of the replay's target."""
    if (tier is None) == (model is None):
        raise UsageError("replay needs one of --tier or --model")
    target = model or settings.router.model_for(str(tier))
    Pricer(settings.router.prices).ensure_priced(target)  # before anything is sent or logged
    return tier or settings.router.tier_of(target) or "custom", target


def exact_request(request: dict[str, Any]) -> Callable[[str], dict[str, Any]]:
    """The request as it is, whatever the metered call asks for (a replay is pinned)."""
    return lambda _model: copy.deepcopy(request)


async def call_once(agent: Agent, spec: CallSpec, retries: Retries) -> CallEnd:
    """One metered call, its events unused: what it ended with."""
    call = agent.call(spec, retries)
    async for _ in call:
        pass
    return call.result()


def _cost(end: CallEnd) -> Decimal:
    return end.record.cost_usd if end.record else ZERO


async def run_experiment(
    settings: Settings,
    log_dir: Path,
    turns: list[SourceTurn],
    skipped: list[SourceTurn],
    *,
    tier: str,
    model: str,
    judge: bool,
    connect: Callable[[], ModelConnection],
) -> Experiment:
    """Replay `turns` on `model` (and judge them) within `settings.max_cost_usd` in all,
    through the connection `connect` makes (the real API or the offline model)."""
    conn = connect()
    agent = Agent(settings, provider=conn.provider, toolbox=Toolbox(), log_dir=log_dir)
    agent.steering.tier = tier
    sources = list(dict.fromkeys(t.run_id for t in turns))
    agent.start(replay_of={"run_id": ",".join(sources), "turn": "all", "model": model})
    exp = Experiment(
        sources,
        tier,
        model,
        [],
        skipped,
        agent.budget.cap,
        run_id=agent.state.run_id,
        log_path=agent.log.path,
        simulated=conn.provider.simulated,
        notice=conn.notice,
    )
    try:
        await _replay_all(agent, exp, turns, judge)
    except (asyncio.CancelledError, KeyboardInterrupt):
        exp.halted = HaltReason.INTERRUPTED  # the call in flight is accounted by the metered call
        raise
    finally:
        exp.spent = agent.spending.spent
        agent.write(exp.record())  # for the report screen
        agent.finish(outcome(exp.halted))
    return exp


async def _replay_all(
    agent: Agent,
    exp: Experiment,
    turns: list[SourceTurn],
    judge: bool,
) -> None:
    tier, model = exp.tier, exp.model
    deep = agent.settings.router.model_for("deep")
    retries = Retries(agent.settings.run.max_retries)  # the experiment's, for all its calls
    for t in turns:
        agent.state.turns += 1
        request = copy.deepcopy(t.request)
        request["model"] = model
        decision = RouteDecision(tier, model, f"replay of {t.run_id} turn {t.turn}")
        spec = CallSpec(agent.state.turns, "replay", decision, exact_request(request))
        end = await call_once(agent, spec, retries)
        result = TurnResult(t, tier, model, cost=_cost(end))
        exp.results.append(result)
        if end.result is None:
            if not end.detail:  # did not fit what is left of the cap
                exp.halted = HaltReason.MAX_COST
                result.error = "not replayed: it did not fit what is left of the cap"
                exp.results.pop()
                break
            result.error = end.detail or "the call failed"
            result.verdict, result.reason = "worse", f"the replay failed: {result.error}"
        else:
            result.content = end.result.content
            if t.answer is None:
                result.verdict, result.reason = "worse", "the original answer was not kept"
            elif _calls(t.answer) or _calls(result.content):
                result.verdict, result.reason = compare_calls(t.answer, result.content)
            elif judge:
                agent.state.turns += 1
                jr = judge_request(deep, t.prompt, _text(t.answer), _text(result.content))
                jdecision = RouteDecision("deep", deep, f"judge of {t.run_id} turn {t.turn}")
                jspec = CallSpec(agent.state.turns, "judge", jdecision, exact_request(jr))
                end = await call_once(agent, jspec, retries)
                result.judge_cost = _cost(end)
                if end.result is None and not end.detail:
                    result.reason = "not judged: the judge call did not fit what is left of the cap"
                    exp.halted = HaltReason.MAX_COST
                elif end.result is None:
                    result.verdict, result.reason = "worse", "not judged: the judge call failed"
                else:
                    result.verdict, result.reason = parse_verdict(end.result.text)
                    if exp.simulated and "simulated" not in result.reason:
                        result.reason = f"(simulated) {result.reason}"
        if exp.halted:
            break


def latest_experiment(log_dir: Path) -> ExperimentResult | None:
    """The result of the latest experiment logged in `log_dir`."""
    try:
        runs = list_runs(log_dir)
    except TuiagentError:
        return None
    for run in reversed(runs):
        found = [r for r in run.typed if isinstance(r, ExperimentResult)]
        if found:
            return found[0]
    return None


# --- from experiment to routing ---------------------------------------------------


@dataclass
class Suggestion:
    rules: list[RouterRule]
    saving: Decimal  # what the rules would have saved over the replayed turns
    moved: int  # replayed turns the rules match
    moved_worse: int  # of them, judged worse (0 by construction on the replayed turns)


def _fits(rule: RouterRule, t: SourceTurn) -> bool:
    return rule_matches(rule, t.prompt, t.tools_before, t.input_estimate)


def suggest_rules(exp: Experiment) -> Suggestion:
    """Rules that send the turns judged same/acceptable to the cheaper tier: each word of
    the router's vocabulary whose every replayed turn held, up to the largest request seen."""
    if exp.tier not in TIERS:
        return Suggestion([], ZERO, 0, 0)
    by_word: dict[str, list[TurnResult]] = {}
    for r in exp.results:
        if r.source.tier not in TIERS or TIERS.index(r.source.tier) <= TIERS.index(exp.tier):
            continue  # not a move to a cheaper tier
        for word in request_words(r.source.prompt):
            by_word.setdefault(word, []).append(r)
    words = sorted(w for w, rs in by_word.items() if all(r.kept for r in rs))
    rules = []
    if words:
        held = [r for r in exp.results if r.kept and any(r in by_word[w] for w in words)]
        biggest = max(r.source.input_estimate for r in held)
        rules.append(
            RouterRule(
                when_words=tuple(words),
                max_input_tokens=-(-biggest // 100) * 100,
                tier=exp.tier,
            )
        )
    matched = [r for r in exp.results if any(_fits(rule, r.source) for rule in rules)]
    saving = sum((r.source.cost - r.cost for r in matched if r.kept), ZERO)
    return Suggestion(rules, saving, len(matched), sum(not r.kept for r in matched))


def rules_toml(rules: list[RouterRule]) -> str:
    """The rules in config.toml's own syntax, to copy."""
    out = []
    for rule in rules:
        out.append("[[router_rules]]")
        if rule.when_words:
            out.append(f"when_words = {json.dumps(list(rule.when_words))}")
        if rule.when_tools:
            out.append(f"when_tools = {json.dumps(list(rule.when_tools))}")
        if rule.max_input_tokens is not None:
            out.append(f"max_input_tokens = {rule.max_input_tokens}")
        out.append(f'tier = "{rule.tier}"')
        out.append("")
    return "\n".join(out)
