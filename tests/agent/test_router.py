"""The router: decisions for request kinds, the cache rule, the pin, budget pressure, and
escalation of a failed fast-tier step (once)."""

from __future__ import annotations

import base64
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.support.session import collect, offline_session
from tuiagent.agent.events import Notice, TurnFinished, TurnStarted
from tuiagent.agent.router import (
    Router,
    classify_request,
    step_failure,
)
from tuiagent.config import DEFAULT_TIER_MODELS, Settings, load_settings
from tuiagent.cost.pricing import Pricer
from tuiagent.errors import ConfigError
from tuiagent.offline import OfflineModel
from tuiagent.session import open_session

MIGRATION = "Design a migration plan for our Postgres database and explain its trade-offs."
DEEP = "Refactor src/app.py and read notes.txt:\n```python\ndef main():\n    return 1\n```"


@pytest.mark.parametrize(
    ("request_text", "tier"),
    [
        ("List the files here.", "fast"),
        ("Which file here is largest?", "fast"),
        ("What is in notes.txt?", "fast"),
        ("Summarize README.md", "fast"),
        ("Find TODO in the sources", "fast"),
        ("hello", "fast"),
        ("Summarize docs/design.md", "fast"),
        ("tl;dr of plan.txt and src/why/main.py", "fast"),
        ("Why does app.py return a TODO string?", "balanced"),
        ("Debug the failing import in src/app.py", "balanced"),
        ("def f(x):\n    return x + 1\n\nwhat does this return for 2", "balanced"),
        ("please " * 400, "balanced"),
        (MIGRATION, "balanced"),
        ("Prove that the retry plan terminates and explain why", "balanced"),
        ("Refactor this:\n```python\ndef main():\n    return 1\n```", "deep"),
        ("Why is this slow? " + "The service reads every row, then sorts them. " * 40, "deep"),
    ],
)
def test_request_kinds(request_text: str, tier: str) -> None:
    kind = classify_request(request_text)
    assert kind.tier == tier, kind.why
    assert kind.why


_PROSE = "The service records payments and retries them when the bank is slow. "
_BLOB = base64.urlsafe_b64encode(random.Random(3).randbytes(45_000)).decode()  # one 60 KB run


@pytest.mark.parametrize(
    ("request_text", "tier", "why"),
    [
        # A 1 MB request: its head and tail are read, and its length counts in full.
        pytest.param(
            _PROSE * 14_000 + "\nWhy does the retry loop stall?",
            "deep",
            "reasoning ('why')",
            id="1MB-why-at-end",
        ),
        pytest.param(
            "Explain this: " + _PROSE * 14_000,
            "deep",
            "reasoning ('explain')",
            id="1MB-explain-first",
        ),
        pytest.param(
            _PROSE * 7_000 + " Why? Design a plan. " + _PROSE * 7_000,
            "balanced",
            "long request",
            id="1MB-why-in-the-middle",
        ),
        # Runs of word characters once made the path and code rules quadratic.
        pytest.param(f"Summarize {_BLOB}", "balanced", "long request", id="60KB-base64url"),
        pytest.param("a" * 1_000_000, "balanced", "long request", id="1MB-one-letter"),
        pytest.param("def main(" + "x" * 60_000, "balanced", "code in the request", id="60KB-call"),
        pytest.param(" " * 200_000 + "\nWhy?", "balanced", "reasoning ('why')", id="200KB-spaces"),
        pytest.param(f"read {'plan/' * 40}design.md", "fast", "lookup ('read')", id="a-deep-path"),
    ],
)
def test_huge_requests_route_on_their_head_and_tail(request_text: str, tier: str, why: str) -> None:
    kind = classify_request(request_text)
    assert (kind.tier, kind.why.startswith(why)) == (tier, True), kind.why


class FakeCache:
    def __init__(self, warm: dict[str, int] | None = None) -> None:
        self.warm = warm or {}

    def cached_prefix_tokens(self, model: str, now: float) -> int:
        return self.warm.get(model, 0)


def router(floor: str = "0.2") -> Router:
    return Router(DEFAULT_TIER_MODELS, Pricer(), budget_floor=Decimal(floor))


def test_decision_lists_every_candidate_with_its_predicted_cost() -> None:
    d = router().choose(prompt="List the files here.", input_tokens=2_000, cache=FakeCache(), now=0)
    assert (d.tier, d.model) == ("fast", DEFAULT_TIER_MODELS["fast"])
    assert [c.tier for c in d.candidates] == ["fast", "balanced", "deep"]
    costs = [c.predicted_cost for c in d.candidates]
    assert 0 < costs[0] < costs[1] < costs[2]  # cold, the bigger model costs more
    record = d.candidates_record()
    assert set(record[0]) >= {"tier", "model", "predicted_cost_usd"}


def test_cache_rule_stays_on_a_warm_model_when_moving_costs_more() -> None:
    warm = FakeCache({DEFAULT_TIER_MODELS["deep"]: 50_000})
    d = router().choose(
        prompt="Why does the nightly build fail?", input_tokens=52_000, cache=warm, now=0
    )
    by_tier = {c.tier: c for c in d.candidates}
    assert by_tier["deep"].predicted_cost < by_tier["balanced"].predicted_cost
    assert d.tier == "deep"
    assert "cache" in d.reason and "balanced" in d.reason
    # The same call with the cache cold goes where the request points.
    cold = router().choose(
        prompt="Why does the nightly build fail?", input_tokens=52_000, cache=FakeCache(), now=0
    )
    assert cold.tier == "balanced" and "cache" not in cold.reason


def test_cache_rule_moves_when_moving_is_cheaper_and_never_stays_below_the_request() -> None:
    # A small warm prefix on deep is not worth the price of deep's output.
    small = FakeCache({DEFAULT_TIER_MODELS["deep"]: 1_500})
    d = router().choose(prompt="Why is it slow?", input_tokens=2_000, cache=small, now=0)
    assert d.tier == "balanced"
    # A warm fast model never keeps a request that asks for more.
    warm_fast = FakeCache({DEFAULT_TIER_MODELS["fast"]: 50_000})
    d = router().choose(prompt=MIGRATION, input_tokens=52_000, cache=warm_fast, now=0)
    assert d.tier == "balanced"


def test_pin_overrides_everything() -> None:
    warm = FakeCache({DEFAULT_TIER_MODELS["deep"]: 50_000})
    for pin in ("fast", "balanced", "deep"):
        d = router().choose(
            prompt=MIGRATION,
            input_tokens=52_000,
            cache=warm,
            now=0,
            pin=pin,
            purpose="summary",
            spent=Decimal("0.95"),
            cap=Decimal(1),
            floor="deep",
        )
        assert d.tier == pin and d.reason == f"pinned to {pin}"


def test_helper_calls_go_to_fast() -> None:
    d = router().choose(
        prompt=MIGRATION, input_tokens=3_000, cache=FakeCache(), now=0, purpose="summary"
    )
    assert d.tier == "fast" and "helper call (summary)" in d.reason


@pytest.mark.parametrize(
    ("spent", "prompt", "tier"),
    [
        ("0.50", DEEP, "deep"),
        ("0.85", DEEP, "balanced"),
        ("0.85", "Why is it slow?", "fast"),
        ("0.99", "List the files", "fast"),
    ],
)
def test_budget_pressure_steps_down(spent: str, prompt: str, tier: str) -> None:
    d = router("0.2").choose(
        prompt=prompt,
        input_tokens=2_000,
        cache=FakeCache(),
        now=0,
        spent=Decimal(spent),
        cap=Decimal(1),
    )
    assert d.tier == tier
    assert ("budget" in d.reason) == (spent == "0.85")


def test_floor_raises_the_tier_and_says_why() -> None:
    d = router().choose(
        prompt="hello",
        input_tokens=2_000,
        cache=FakeCache(),
        now=0,
        floor="balanced",
        floor_reason="escalated: fast-tier turn 1 gave a refusal",
    )
    assert d.tier == "balanced" and "escalated" in d.reason


@pytest.mark.parametrize(
    ("text", "stop", "tools", "failure"),
    [
        ("", "end_turn", False, "an empty answer"),
        ("  \n", "end_turn", False, "an empty answer"),
        ("", "tool_use", True, None),
        ("I can't help with that request.", "end_turn", False, "a refusal"),
        ("I’m unable to assist with this.", "end_turn", False, "a refusal"),
        ("Sure.", "refusal", False, "a refusal"),
        ("I could not use read_file on x.txt: file not found", "end_turn", False, None),
        ("The workspace has 3 files.", "end_turn", False, None),
    ],
)
def test_step_failure(text: str, stop: str, tools: bool, failure: str | None) -> None:
    assert step_failure(text, stop, tools) == failure


# --- in the agent --------------------------------------------------------------------


def turns_of(events: list[Any]) -> list[dict[str, Any]]:
    return [e.record.to_json() for e in events if isinstance(e, TurnFinished)]


async def test_auto_routes_lookups_fast_and_plans_up(workspace: Path, log_dir: Path) -> None:
    session = offline_session(workspace, log_dir)
    turns = turns_of(await collect(session, "List the files here."))
    assert turns[0]["tier"] == "fast"
    session = offline_session(workspace, log_dir)
    events = await collect(session, MIGRATION)
    turns = turns_of(events)
    assert turns[0]["tier"] in ("balanced", "deep")
    for t in turns:
        assert t["route_reason"]
        assert [c["tier"] for c in t["route_candidates"]] == ["fast", "balanced", "deep"]
    started = [e for e in events if isinstance(e, TurnStarted)]
    assert started[0].route_candidates == turns[0]["route_candidates"]


async def test_pinned_deep_pins_every_turn(workspace: Path, log_dir: Path) -> None:
    session = offline_session(workspace, log_dir, tier="deep")
    turns = turns_of(await collect(session, "List the files here, then read notes.txt"))
    assert len(turns) >= 3
    assert {t["tier"] for t in turns} == {"deep"}
    assert {t["route_reason"] for t in turns} == {"pinned to deep"}


def refusing_model() -> ScriptedModel:
    return ScriptedModel(
        [
            [{"type": "text", "text": "I can't help with that."}],
            [{"type": "text", "text": "A poem."}],
        ]
    )


async def test_refusal_on_fast_is_redone_one_tier_up_once(workspace: Path, log_dir: Path) -> None:
    session = open_session(
        Settings().with_changes(log_dir=log_dir),
        workspace=workspace,
        offline=True,
        offline_model=refusing_model(),
    )
    events = await collect(session, "Write me a poem about autumn")
    turns = turns_of(events)
    assert [t["tier"] for t in turns] == ["fast", "balanced"]
    assert turns[0]["escalated_from_turn"] is None
    assert turns[1]["escalated_from_turn"] == 1
    assert "escalated" in turns[1]["route_reason"] and "refusal" in turns[1]["route_reason"]
    assert any(isinstance(e, Notice) and "redoing it on balanced" in e.text for e in events)
    # The failed step left the conversation: one user message, one answer.
    assert [m["role"] for m in session.agent.state.history] == ["user", "assistant"]
    # Both calls were paid for.
    assert len(session.agent.spending.turn_costs) == 2


async def test_pinned_fast_does_not_escalate(workspace: Path, log_dir: Path) -> None:
    settings = Settings().with_changes(log_dir=log_dir, tier="fast")
    session = open_session(
        settings, workspace=workspace, offline=True, offline_model=refusing_model()
    )
    turns = turns_of(await collect(session, "Write me a poem about autumn"))
    assert [t["tier"] for t in turns] == ["fast"]


@pytest.mark.parametrize("request_text", ["say hi", "Write me a poem about autumn"])
async def test_offline_model_answers_what_it_cannot_map_plainly(
    workspace: Path, log_dir: Path, request_text: str
) -> None:
    # Its answer to a request it has no tool for is not a refusal: not redone, paid once.
    session = offline_session(workspace, log_dir)
    events = await collect(session, request_text)
    turns = turns_of(events)
    assert [t["tier"] for t in turns] == ["fast"]
    answer = session.agent.state.history[-1]["content"][0]["text"]
    assert step_failure(answer, "end_turn", False) is None
    assert answer.startswith("Hello!") == (request_text == "say hi")


class ScriptedModel(OfflineModel):
    """The offline model's wire protocol and cache, with answers from a script."""

    def __init__(self, script: list[list[dict[str, Any]]]) -> None:
        super().__init__()
        self.script = script
        self.models: list[str] = []

    def _content(self, body: dict[str, Any], max_tokens: int) -> tuple[list[dict[str, Any]], str]:
        self.models.append(body["model"])
        content = self.script.pop(0) if self.script else [{"type": "text", "text": ""}]
        content = [b for b in content if b.get("text", "x")]
        stop = "tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn"
        return content, stop


def read_missing(n: int) -> list[dict[str, Any]]:
    return [
        {"type": "text", "text": "Let me read it."},
        {
            "type": "tool_use",
            "id": f"toolu_{n:04d}",
            "name": "read_file",
            "input": {"path": "missing.txt"},
        },
    ]


async def test_same_tool_error_twice_escalates(workspace: Path, log_dir: Path) -> None:
    model = ScriptedModel(
        [read_missing(1), read_missing(2), [{"type": "text", "text": "There is no missing.txt."}]]
    )
    session = open_session(
        Settings().with_changes(log_dir=log_dir),
        workspace=workspace,
        offline=True,
        offline_model=model,
    )
    turns = turns_of(await collect(session, "Read missing.txt"))
    assert [t["tier"] for t in turns] == ["fast", "fast", "balanced"]
    assert turns[2]["escalated_from_turn"] == 2
    assert "the same tool error twice" in turns[2]["route_reason"]
    assert model.models[2] == DEFAULT_TIER_MODELS["balanced"]
    # The redo sees the first error, not the repeated step.
    tool_results = [
        b
        for m in session.agent.state.history
        for b in m["content"]
        if b.get("type") == "tool_result"
    ]
    assert len(tool_results) == 1


async def test_escalation_happens_once(workspace: Path, log_dir: Path) -> None:
    model = ScriptedModel([[{"type": "text", "text": ""}]] * 3)
    session = open_session(
        Settings().with_changes(log_dir=log_dir),
        workspace=workspace,
        offline=True,
        offline_model=model,
    )
    events = await collect(session, "hello")
    turns = turns_of(events)
    assert [t["tier"] for t in turns] == ["fast", "balanced"]
    assert "empty answer" in turns[1]["route_reason"]
    assert sum(isinstance(e, Notice) for e in events) == 1


async def test_rest_of_an_escalated_request_stays_up(workspace: Path, log_dir: Path) -> None:
    model = ScriptedModel(
        [
            [{"type": "text", "text": "I can't help with that."}],
            read_missing(1),
            [{"type": "text", "text": "No such file."}],
        ]
    )
    session = open_session(
        Settings().with_changes(log_dir=log_dir),
        workspace=workspace,
        offline=True,
        offline_model=model,
    )
    turns = turns_of(await collect(session, "Read missing.txt"))
    assert [t["tier"] for t in turns] == ["fast", "balanced", "balanced"]
    assert "kept at balanced" in turns[2]["route_reason"]
    assert turns[2]["escalated_from_turn"] is None


async def test_budget_pressure_in_the_agent(workspace: Path, log_dir: Path) -> None:
    prompt = DEEP
    first = turns_of(await collect(offline_session(workspace, log_dir), prompt))[0]
    assert first["tier"] == "deep" and "budget" not in first["route_reason"]
    # A cap the first call leaves 10% of: the next call steps down. max_tokens is the first
    # answer's length, so that the hard cap's worst-case reservation lets that call through.
    cap = Decimal(str(first["cost_usd"])) / Decimal("0.9")
    session = offline_session(
        workspace, log_dir, max_cost_usd=cap, max_tokens=first["output_tokens"], min_useful_tokens=1
    )
    turns = turns_of(await collect(session, prompt))
    assert turns[0]["tier"] == "deep"
    # The router steps down for budget pressure; the hard cap may step down further.
    assert turns[1]["tier"] in ("balanced", "fast")
    assert "budget: 10% of the cap left" in turns[1]["route_reason"]


@pytest.mark.parametrize("value", ["0.2", "-0.1", "1", "true"])
def test_router_budget_floor_config(tmp_path: Path, value: str) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"router_budget_floor = {value}\n")
    if value == "0.2":
        assert load_settings(cfg).router.budget_floor == Decimal("0.2")
        return
    with pytest.raises(ConfigError, match="router_budget_floor"):
        load_settings(cfg)


async def test_classifier_is_off_by_default(workspace: Path, log_dir: Path) -> None:
    session = offline_session(workspace, log_dir)
    turns = turns_of(await collect(session, "List the files here."))
    assert {t["purpose"] for t in turns} == {"agent"}


async def test_classifier_call_is_priced_logged_and_decides(workspace: Path, log_dir: Path) -> None:
    model = ScriptedModel([[{"type": "text", "text": "deep"}], [{"type": "text", "text": "Done."}]])
    settings = Settings().with_changes(log_dir=log_dir, router_classifier=True)
    session = open_session(settings, workspace=workspace, offline=True, offline_model=model)
    turns = turns_of(await collect(session, "List the files here."))
    assert [t["purpose"] for t in turns] == ["classify", "agent"]
    assert turns[0]["tier"] == "fast" and turns[0]["cost_usd"] > 0
    assert turns[0]["route_reason"] == "helper call (classify) -> fast"
    assert turns[1]["tier"] == "deep" and "classifier: deep" in turns[1]["route_reason"]
    assert model.models == [DEFAULT_TIER_MODELS["fast"], DEFAULT_TIER_MODELS["deep"]]


async def test_classifier_naming_no_tier_leaves_it_to_the_rules(
    workspace: Path, log_dir: Path
) -> None:
    # The offline model cannot classify; it says so, and the rules decide.
    session = offline_session(workspace, log_dir, router_classifier=True)
    turns = turns_of(await collect(session, "List the files here."))
    assert turns[0]["purpose"] == "classify"
    assert turns[1]["tier"] == "fast"
    assert turns[1]["route_reason"].startswith("classifier named no tier; lookup")


async def test_pinned_tier_skips_the_classifier(workspace: Path, log_dir: Path) -> None:
    session = offline_session(workspace, log_dir, router_classifier=True, tier="balanced")
    turns = turns_of(await collect(session, "List the files here."))
    assert {t["purpose"] for t in turns} == {"agent"}


def test_router_classifier_config(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("router_classifier = true\n")
    assert load_settings(cfg).router.classifier is True
    cfg.write_text('router_classifier = "yes"\n')
    with pytest.raises(ConfigError, match="router_classifier"):
        load_settings(cfg)
