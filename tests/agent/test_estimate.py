"""`tuiagent run --estimate`: the first call priced before sending, the message's range from
this workspace's earlier messages, nothing sent, nothing logged."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from tuiagent.agent.estimate import INPUT_KINDS, quantile
from tuiagent.cli import main
from tuiagent.config import Settings
from tuiagent.runs.log import read_records


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def estimate(capsys: pytest.CaptureFixture[str], ws: Path, logs: Path, prompt: str) -> dict:
    code, out, err = cli(
        capsys, "run", "--estimate", "--json", "--offline", "--tier", "fast",
        "--workspace", str(ws), "--log-dir", str(logs), prompt,
    )  # fmt: skip
    assert code == 0, err
    return json.loads(out)


def first_input_and_message_cost(log: Path) -> tuple[Decimal, Decimal]:
    records, _ = read_records(log)
    first = next(r for r in records if r["type"] == "turn")
    paid = sum(Decimal(str(first["cost_breakdown_usd"].get(k, 0))) for k in INPUT_KINDS)
    whole = sum(Decimal(str(r["cost_usd"])) for r in records if r["type"] in ("turn", "attempt"))
    return paid, whole


def test_the_first_call_is_priced_exactly_and_nothing_is_sent(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = tmp_path / "logs"
    shown = estimate(capsys, workspace, logs, "List the files here.")
    assert shown["p50_usd"] is None and shown["drawn_from"] == 0
    assert not logs.exists() or not list(logs.glob("*.jsonl"))  # no run, no billing
    code, _, err = cli(
        capsys, "run", "--offline", "--tier", "fast", "--workspace", str(workspace),
        "--log-dir", str(logs), "List the files here.",
    )  # fmt: skip
    assert code == 0, err
    (log,) = logs.glob("*.jsonl")
    paid, _ = first_input_and_message_cost(log)
    assert Decimal(str(shown["first_call_usd"])) == paid  # a cold cache: exactly what it billed
    records, _ = read_records(log)
    first = next(r for r in records if r["type"] == "turn")
    assert shown["input_tokens"] == sum(
        first[k] for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    )
    assert Decimal(str(shown["first_call_held_usd"])) >= paid


def test_the_range_is_drawn_from_this_workspaces_earlier_messages(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = tmp_path / "logs"
    prompts = ["List the files here.", "Read notes.txt", "Search for TODO"]
    for prompt in prompts:
        assert cli(capsys, "run", "--offline", "--tier", "fast", "--workspace", str(workspace),
                   "--log-dir", str(logs), prompt)[0] == 0  # fmt: skip
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("x\n")
    assert cli(capsys, "run", "--offline", "--workspace", str(other), "--log-dir", str(logs),
               "List the files here.")[0] == 0  # fmt: skip
    shown = estimate(capsys, workspace, logs, "List the files here.")
    assert shown["drawn_from"] == 3  # the other workspace's message is not one of them
    ratios = []
    for log in sorted(logs.glob("*.jsonl")):
        records, _ = read_records(log)
        if records[0]["workspace"] == str(workspace.resolve()):
            paid, whole = first_input_and_message_cost(log)
            ratios.append(whole / paid)
    first = Decimal(str(shown["first_call_usd"]))
    assert Decimal(str(shown["p50_usd"])) == pytest.approx(first * quantile(ratios, 0.5))
    assert Decimal(str(shown["p90_usd"])) == pytest.approx(first * quantile(ratios, 0.9))
    code, out, _ = cli(capsys, "run", "--estimate", "--offline", "--tier", "fast",
                       "--workspace", str(workspace), "--log-dir", str(logs), "Read notes.txt")  # fmt: skip
    assert code == 0
    assert "whole message $" in out and "(p50-p90 of 3 earlier messages)" in out
    assert "nothing was sent" in out
    assert len(list(logs.glob("*.jsonl"))) == 4  # the estimates logged no run


def test_an_empty_prompt_is_refused_before_any_estimate(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "run", "--estimate", "--offline", "--workspace", str(workspace),
                       "--log-dir", str(tmp_path), "   ")  # fmt: skip
    assert code == 2 and "the prompt is empty" in err


async def test_in_a_conversation_the_first_call_is_priced_at_the_warm_cache(
    workspace: Path, log_dir: Path
) -> None:
    """The second message's first call reads the first's prefix from the cache: the estimate
    prices that read, and it is what the call billed."""
    from tests.support.session import collect, offline_session

    session = offline_session(workspace, log_dir, tier="fast")
    agent = session.agent
    await collect(session, "List the files here.")
    shown = await agent.estimate("What is in notes.txt?")
    assert shown.drawn_from == 1 and shown.p50_usd is not None
    turns_before = agent.state.turns
    async for _ in agent.send("What is in notes.txt?"):
        pass
    records, _ = read_records(agent.log.path)
    first = next(r for r in records if r["type"] == "turn" and r["turn"] == turns_before + 1)
    assert first["cache_read_input_tokens"] > 0  # the warm prefix was read
    paid = sum(Decimal(str(first["cost_breakdown_usd"].get(k, 0))) for k in INPUT_KINDS)
    assert shown.first_call_usd == paid
    agent.finish()


@pytest.mark.parametrize(
    ("tier", "pause_s"), [("deep", 0), ("balanced", 600)], ids=["tier-change", "pause"]
)
async def test_a_first_call_that_writes_a_cold_cache_counts_its_write_once(
    workspace: Path, log_dir: Path, tier: str, pause_s: float
) -> None:
    """The walk: a few messages on one tier, then F4 to deep: the range said $0.23-$0.79 and
    the message cost $0.067. The first call on the new model writes its cache; the ratios
    were learned from first calls that read one, so the write was multiplied by them. The
    same after a pause past the cache's life (5 minutes), on the same tier."""
    from tuiagent.offline import OfflineModel
    from tuiagent.session import open_session

    now = [1_800_000_000.0]

    def clock() -> float:
        return now[0]

    settings = Settings().with_changes(log_dir=log_dir, tier="balanced")
    session = open_session(
        settings, workspace=workspace, offline=True, offline_model=OfflineModel(clock=clock)
    )
    agent = session.agent
    agent.caller.wall_clock = clock
    agent.start()
    for prompt in ("List the files here.", "Read notes.txt", "What is in README.md?"):
        async for _ in agent.send(prompt):
            pass
        now[0] += 20
    agent.set_tier(tier)
    now[0] += pause_s
    shown = await agent.estimate("What is in src/app.py?")
    before = agent.budget.snapshot().settled
    async for _ in agent.send("What is in src/app.py?"):
        pass
    spent = agent.budget.snapshot().settled - before
    agent.finish()
    assert shown.p50_usd is not None and shown.p90_usd is not None
    # Near what it cost, on either side (the ratios come from three short messages).
    assert shown.first_call_usd < spent <= shown.p90_usd * Decimal("1.25")
    assert shown.p50_usd <= spent * Decimal("1.25"), (shown.short(), spent)
