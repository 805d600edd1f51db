"""Where an agent's records go in its run, and who it is on each.

The main agent opens the run: a new run id, the run log and the run's transcript. A
sub-agent (agent/delegate.py) has a parent: it writes to the parent's run log with its own
identity on every record (`agent`, `parent_agent`, `parent_turn`, `task`), and keeps its
conversation in a transcript of its own. (The records' types are tuiagent/runs/records.py's.)
"""

from __future__ import annotations

import dataclasses
import getpass
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuiagent.apikey import api_key
from tuiagent.ledger import Scopes, key_id
from tuiagent.ledger.scopes import clean_value
from tuiagent.meter import Held
from tuiagent.runs.layout import transcript_path
from tuiagent.runs.log import R, RunLog, utc_now_iso
from tuiagent.runs.log import new_run_id as new_run_id  # the run's id (a test's seam)
from tuiagent.runs.records import HoldRecord
from tuiagent.runs.transcript import Transcript


@dataclass(frozen=True)
class Place:
    """An agent's place in its run: its identity, the run's log, its transcript."""

    identity: dict[str, Any]  # on every record the agent writes
    run_id: str
    log: RunLog
    transcript: Transcript

    def own(self, record: R) -> R:
        """The record as this agent's: its run id and identity on it."""
        return dataclasses.replace(record, run_id=self.run_id, **self.identity)

    def write(self, record: R) -> R:
        """Write a record to the run log as this agent's."""
        record = self.own(record)
        self.log.append(record)
        return record

    def write_hold(self, turn: int, purpose: str, held: Held, *, into: list[HoldRecord]) -> None:
        """A call's request in the transcript and its `hold` record, written before it is
        sent (the meter asks for them); the record put `into` the list the call reads it
        from. Both written, or (a full disk: LogWriteError) the hold released and nothing
        sent."""
        plan = held.plan
        res = plan.reservation
        self.transcript.request(turn, purpose, plan.request)
        record = self.write(
            HoldRecord(
                hold_id=held.hold_id,
                turn=turn,
                purpose=purpose,
                model=plan.model,
                reserved_usd=res.worst_case_usd,
                max_tokens=int(plan.request["max_tokens"]),
                input_tokens_counted=res.input_tokens,
                started_at=utc_now_iso(),
            )
        )
        into.append(record)


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
    run_id: str,
    parent: Place | None = None,
    parent_turn: int = 0,
    task: str | None = None,
) -> Place:
    """The main agent's place (a new run, `run_id`), or a sub-agent's in its parent's run
    (`parent`, at the parent's turn `parent_turn`)."""
    identity: dict[str, Any] = {"agent": agent_id}
    if parent is None:
        log = RunLog(log_dir, run_id)
        return Place(identity, run_id, log, Transcript(transcript_path(log.path)))
    identity.update(parent_agent=parent.identity["agent"], parent_turn=parent_turn, task=task)
    transcript = Transcript(transcript_path(parent.log.path, agent_id))
    return Place(identity, parent.run_id, parent.log, transcript)
