"""An agent's records in its run: where they go, who it is on each, and the run's first and
last records (`run_start`, `run_end`; their types are tuiagent/runs/records.py's).

The main agent opens the run: a new run id, the run log and the run's transcript. A
sub-agent (agent/delegate.py) has a parent: it writes to the parent's run log with its own
identity on every record (`agent`, `parent_agent`, `parent_turn`, `task`), and keeps its
conversation in a transcript of its own.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuiagent.apikey import api_key
from tuiagent.config import TIERS
from tuiagent.cost.ledger import Ledger
from tuiagent.ledger import Scopes, key_id
from tuiagent.ledger.scopes import clean_value
from tuiagent.runs.layout import transcript_path
from tuiagent.runs.log import RunLog, utc_now_iso
from tuiagent.runs.log import new_run_id as new_run_id  # the run's id (a test's seam)
from tuiagent.runs.records import Limits, RunEnd, RunStart
from tuiagent.runs.transcript import Transcript

if TYPE_CHECKING:
    from tuiagent.agent.loop import Agent


@dataclass(frozen=True)
class Place:
    identity: dict[str, Any]  # on every record the agent writes
    run_id: str
    log: RunLog
    transcript: Transcript
    ledger: Ledger | None = None  # a sub-agent's is its parent's: run_end totals every agent


def run_scopes(run_id: str, session: str, simulated: bool) -> Scopes:
    """What a run's calls are for the budgets: its session, the user at this machine,
    `tuiagent` as the client, a hash of the API key (none offline); simulated offline."""
    try:
        user: str | None = getpass.getuser()
    except (OSError, KeyError):
        user = None
    key = None if simulated else key_id(api_key())
    return Scopes(
        session=session,
        user=clean_value(user),
        client="tuiagent",
        key=key,
        simulated=simulated,
        run=run_id,
    )


def place_of(
    agent_id: str,
    *,
    log_dir: Path,
    run_id: str | None = None,
    parent: Agent | None = None,
    task: str | None = None,
) -> Place:
    identity: dict[str, Any] = {"agent": agent_id}
    if parent is None:
        run_id = run_id or new_run_id()
        log = RunLog(log_dir, run_id)
        return Place(identity, run_id, log, Transcript(transcript_path(log.path)))
    identity.update(parent_agent=parent.agent_id, parent_turn=parent.state.turns, task=task)
    transcript = Transcript(transcript_path(parent.log.path, agent_id))
    return Place(identity, parent.state.run_id, parent.log, transcript, parent.ledger)


def run_start(agent: Agent, replay_of: dict[str, Any] | None) -> RunStart:
    return RunStart(
        started_at=utc_now_iso(),
        provider=agent.provider,
        simulated=agent.simulated,
        models={t: agent.settings.router.model_for(t) for t in TIERS},
        tier=agent.tier,
        limits=Limits(agent.budget.cap, agent.max_turns, agent.settings.run.max_tokens),
        replay_of=replay_of,
        resumed_from=agent.resumed_from,
        session=agent.session if agent.session != agent.state.run_id else None,
    )


def run_end(agent: Agent) -> RunEnd:
    ledger, state, u = agent.ledger, agent.state, agent.ledger.usage
    return RunEnd(
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
