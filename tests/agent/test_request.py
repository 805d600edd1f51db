"""A request's home (agent/loop.py, Request): its events stream, then its result says how it
ended, in how many calls and for what; going on after a limit keeps the request it goes on
with."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from tests.support.session import offline_session
from tuiagent.agent.events import Halted, TurnFinished
from tuiagent.runs.log import read_records


async def test_an_answered_request_says_its_answer_calls_and_cost(
    workspace: Path, log_dir: Path
) -> None:
    session = offline_session(workspace, log_dir)
    agent = session.agent
    agent.start()
    await _drain(agent.send("List the files here"))
    request = agent.send("Which file here is largest?")
    events = [e async for e in request]
    end = request.result()
    agent.finish()
    finished = [e.record for e in events if isinstance(e, TurnFinished)]
    assert end.halt_reason is None and end.halted is None
    assert end.answer and finished[-1].stop_reason == "end_turn"
    assert "data.csv" in end.answer  # the offline model names the largest file
    assert end.turns == len(finished) == 2  # list_dir, then the answer
    # What it spent is its own calls' cost, not the first request's.
    records, _ = read_records(agent.log.path)
    calls = [r for r in records if r["type"] in ("turn", "attempt")]
    mine = calls[-len(finished) :]
    assert end.cost_usd == sum(Decimal(str(r["cost_usd"])) for r in mine) > 0
    assert end.cost_usd < agent.spending.spent


async def test_a_halted_request_says_which_limit_and_going_on_keeps_its_prompt(
    workspace: Path, log_dir: Path
) -> None:
    session = offline_session(workspace, log_dir, max_turns=1)
    agent = session.agent
    agent.start()
    first = agent.send("Which file here is largest?")
    events = [e async for e in first]
    end = first.result()
    halts = [e for e in events if isinstance(e, Halted)]
    assert end.halted is not None and halts == [end.halted]
    assert end.halt_reason == "max_turns" and end.answer is None and end.turns == 1
    agent.set_max_turns(5)
    going_on = agent.go_on()
    await _drain(going_on)
    after = going_on.result()
    agent.finish()
    assert going_on.prompt == "Which file here is largest?"  # the router still reads it
    assert after.halt_reason is None and after.answer and "data.csv" in after.answer
    assert after.turns == 1  # counted from where it went on


async def test_the_agent_says_whether_a_halted_request_waits_to_go_on(
    workspace: Path, log_dir: Path
) -> None:
    """The app asks the agent (it kept a flag of its own, set from the Halted event): a
    request the cap stopped partway waits, raised or not, until it goes on or /clear drops
    it; one halted before it sent anything gave its message back; max_turns waits too."""
    session = offline_session(workspace, log_dir)
    agent = session.agent
    agent.start()

    async def approve(name: str, arguments: dict[str, object]) -> bool:
        agent.set_cap(agent.spending.spent + Decimal("0.0001"))  # the next call cannot fit
        return True

    agent.approve = approve
    await _drain(agent.send("write todo.md: # Todo"))
    assert (agent.snapshot().halt_reason, agent.snapshot().waiting) == ("max_cost", "max_cost")
    agent.set_cap(Decimal(1))
    assert (agent.snapshot().halt_reason, agent.snapshot().waiting) == (None, "max_cost")
    agent.clear_conversation()  # the request goes with its conversation
    assert agent.snapshot().waiting is None
    agent.set_cap(agent.spending.spent + Decimal("0.00001"))
    await _drain(agent.send("List the files here"))  # halted before it sent anything
    assert (agent.snapshot().halt_reason, agent.snapshot().waiting) == ("max_cost", None)
    agent.set_cap(Decimal(1))
    agent.set_max_turns(1)
    await _drain(agent.send("Which file here is largest?"))
    assert agent.snapshot().waiting == "max_turns"
    agent.set_max_turns(5)
    await _drain(agent.go_on())
    agent.finish()
    assert agent.snapshot().waiting is None  # answered


async def _drain(stream: object) -> None:
    async for _ in stream:  # type: ignore[attr-defined]
        pass
