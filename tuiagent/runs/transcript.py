"""The run's transcript read back (runs/layout.py says where it is; runs/log.py's
`Transcript` writes it, beside the log).

The run log says what each call cost; the transcript keeps what each call sent, so a turn
can be replayed exactly, split by where its input came from, or a session resumed. Each
message is written once, as the history grows; each request is written as its own fields
plus how many messages it sent and where its cache markers sat, so the file grows with the
conversation, not with its square. Reading rebuilds each request as it was sent.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuiagent.errors import UsageError
from tuiagent.runs.layout import RunFile, find_run
from tuiagent.runs.records import ProxyTurn, Turn

# --- reading -----------------------------------------------------------------------


def _read(path: Path) -> list[dict[str, Any]]:
    out = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                out.append(json.loads(line))
            except (ValueError, RecursionError):
                continue  # a line cut by a killed run, or nested beyond reading
    return out


def _replay(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The conversation as the run left it, and every request rebuilt exactly as it was
    sent (against the history as it stood then: clearing and compaction edit it), each with
    the answer it got then (`answer`: the assistant message that followed it, or None)."""
    history: list[dict[str, Any]] = []
    out = []
    waiting: list[dict[str, Any]] = []  # agent requests whose answer is not yet read
    for rec in _read(path):
        kind = rec.get("kind")
        if kind == "messages_from":
            history = history[: int(rec["index"])]  # a new list: earlier requests keep theirs
            waiting = []  # an answer is written before an edit: theirs never came
        elif kind == "message" and int(rec["index"]) == len(history):
            message = rec["message"]
            for request in [w for w in waiting if len(w["request"]["messages"]) == len(history)]:
                if message.get("role") == "assistant":
                    request["answer"] = _content_blocks(message)
                waiting.remove(request)
            history.append(message)
        elif kind == "request" and "messages" not in rec:  # a helper call, kept whole
            answer = rec.get("answer")
            kept = isinstance(answer, list) and all(isinstance(b, dict) for b in answer)
            out.append(
                {
                    "turn": rec["turn"],
                    "purpose": rec["purpose"],
                    "request": rec["request"],
                    "answer": answer if kept else None,
                }
            )
        elif kind == "request":
            request = copy.deepcopy(rec["request"])
            sent = copy.deepcopy(history[: rec["messages"]])
            for mi, bi, marker in rec.get("marks", []):
                sent[mi]["content"][bi]["cache_control"] = marker
            request["messages"] = sent
            entry = {
                "turn": rec["turn"],
                "purpose": rec.get("purpose", "agent"),
                "request": request,
                "answer": None,
            }
            out.append(entry)
            waiting.append(entry)
    return history, out


def _content_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    return content if isinstance(content, list) else [{"type": "text", "text": str(content)}]


def load_messages(path: Path) -> list[dict[str, Any]]:
    """The conversation as the run left it (after any clearing, compaction or /clear)."""
    return _replay(path)[0]


@dataclass(frozen=True)
class Resumable:
    """What a run left to go on with: its conversation and the originals it kept."""

    run_id: str
    messages: list[dict[str, Any]]
    results: dict[str, str]  # result id -> the original's text


def load_resumable(path: Path) -> Resumable:
    """The conversation (as load_messages) and the kept originals of a run's transcript."""
    results = {
        str(rec["id"]): rec["text"]
        for rec in _read(path)
        if rec.get("kind") == "result" and isinstance(rec.get("text"), str)
    }
    return Resumable(path.stem, load_messages(path), results)


def load_requests(path: Path) -> list[dict[str, Any]]:
    """Every request of the run, rebuilt exactly, with its `turn` and `purpose`."""
    return _replay(path)[1]


def requests_by_turn(
    run: RunFile, warnings: list[str], agent: str = "main"
) -> dict[tuple[int, str], dict[str, Any]]:
    return {key: sent.request for key, sent in _sent_by_turn(run, warnings, agent).items()}


@dataclass(frozen=True)
class Sent:
    """A request as it was sent, and the answer it got then (None: not in the transcript)."""

    request: dict[str, Any]
    answer: list[dict[str, Any]] | None


def _sent_by_turn(run: RunFile, warnings: list[str], agent: str = "main") -> dict[Any, Sent]:
    path = run.subagent_transcript(agent)
    if not path.is_file():
        return {}
    try:
        requests = load_requests(path)
    except (OSError, LookupError, TypeError, ValueError, RecursionError):
        warnings.append(f"{path.name}: transcript unreadable; input sources not split")
        return {}
    # A retried call writes its request again: the last one is the one that was billed.
    return {(int(r["turn"]), str(r["purpose"])): Sent(r["request"], r["answer"]) for r in requests}


# --- a logged turn, for replay --------------------------------------------------


@dataclass
class TurnRequest:
    """One turn of a logged run, as it was sent and as it was answered."""

    run: RunFile
    record: Turn | ProxyTurn
    request: dict[str, Any]
    answer: list[dict[str, Any]] | None  # None: the transcript does not have it


def turn_request(log_dir: Path, run_id: str, turn: int) -> TurnRequest:
    """The exact request of a logged turn (from its transcript) and its logged record."""
    run = find_run(log_dir, run_id)
    records = [c for c in run.calls if isinstance(c, Turn | ProxyTurn) and c.type == "turn"]
    numbers = [r.turn for r in records]
    matches = [r for r in records if r.turn == turn]
    if not matches:
        have = f"turns {min(numbers)}-{max(numbers)}" if numbers else "no turns"
        raise UsageError(f"run {run.run_id} has no turn {turn} ({have})")
    record = matches[0]
    sent = sent_requests(run).get((turn, record.purpose or "agent"))
    if sent is None:
        raise UsageError(f"the transcript of run {run.run_id} has no request for turn {turn}")
    return TurnRequest(run, record, sent.request, sent.answer)


def sent_requests(run: RunFile) -> dict[tuple[int, str], Sent]:
    """A run's requests by (turn, purpose), each with the answer it got, from its transcript."""
    if not run.transcript.is_file():
        raise UsageError(
            f"run {run.run_id} has no transcript at {run.transcript}: its requests were not kept"
        )
    warnings: list[str] = []
    requests = _sent_by_turn(run, warnings)
    if warnings:
        raise UsageError(warnings[0].replace("; input sources not split", ""))
    return requests
