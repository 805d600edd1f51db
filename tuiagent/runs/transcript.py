"""The run's transcript, beside its log (runs/layout.py says where): written here, read here.

The run log says what each call cost; the transcript keeps what each call sent, so a turn
can be replayed exactly, split by where its input came from, or a session resumed. Each
message is written once, as the history grows; each request is written as its own fields
plus how many messages it sent and where its cache markers sat, so the file grows with the
conversation, not with its square.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuiagent.errors import UsageError
from tuiagent.redact import redact
from tuiagent.runs.layout import RunFile, find_run
from tuiagent.runs.log import append_whole, cut_torn_tail
from tuiagent.runs.records import ProxyTurn, Turn

# --- writing -----------------------------------------------------------------------


class Transcript:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        cut_torn_tail(self._fd)  # a resumed run's transcript may end in a torn record
        self._messages_written = 0

    def _append(self, *records: dict[str, Any], written: int | None = None) -> None:
        """The records in one write (a call's new messages and its request go together),
        whole or not at all (LogWriteError); once written, `written` messages are."""
        lines = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        if lines:
            append_whole(self._fd, redact(lines).encode(), self.path)
        if written is not None:
            self._messages_written = written

    def request(
        self,
        turn: int,
        purpose: str,
        request: dict[str, Any],
        answer: list[dict[str, Any]] | None = None,
    ) -> None:
        """The exact request of one call (after cache markers and budget clamps). A call
        whose answer is not in the history (a proxied one) keeps its `answer` with it."""
        if purpose != "agent":
            # A helper call (a summary) or a proxied one has messages of its own, not the
            # history: kept whole.
            rec = {"kind": "request", "turn": turn, "purpose": purpose, "request": request}
            self._append({**rec, "answer": answer} if answer is not None else rec)
            return
        messages = request.get("messages", [])
        new, written = self._new_messages(messages)
        marks = []
        for mi, message in enumerate(messages):
            content = message.get("content")
            if isinstance(content, list):
                for bi, block in enumerate(content):
                    if isinstance(block, dict) and "cache_control" in block:
                        marks.append([mi, bi, block["cache_control"]])
        fields = {k: v for k, v in request.items() if k != "messages"}
        self._append(
            *new,
            {
                "kind": "request",
                "turn": turn,
                "purpose": purpose,
                "request": fields,
                "messages": len(messages),
                "marks": marks,
            },
            written=written,
        )

    def result(self, result_id: str, text: str) -> None:
        """The original of a tool result kept for expand_result, so that a resumed run still
        has it under its id."""
        self._append({"kind": "result", "id": result_id, "text": text})

    def messages(self, messages: list[dict[str, Any]]) -> None:
        """Write the messages not yet written (also at the end, so a resume sees the answer)."""
        new, written = self._new_messages(messages)
        self._append(*new, written=written)

    def _new_messages(
        self, messages: list[dict[str, Any]], start: int | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """The messages from `start` (by default the first not yet written) as records, and
        how many are written once they are (not before: a write can fail)."""
        start = self._messages_written if start is None else start
        new = [
            {"kind": "message", "index": i, "message": _without_marks(messages[i])}
            for i in range(start, len(messages))
        ]
        return new, max(start, len(messages))

    def rewrite(self, messages: list[dict[str, Any]], first_changed: int) -> None:
        """The history was edited from `first_changed` on (results cleared, a compaction,
        /clear): what follows supersedes the messages from there, so each request written
        before still rebuilds as it was sent."""
        new, written = self._new_messages(messages, first_changed)
        self._append({"kind": "messages_from", "index": first_changed}, *new, written=written)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _without_marks(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if not isinstance(content, list):
        return message
    return {
        **message,
        "content": [
            {k: v for k, v in b.items() if k != "cache_control"} if isinstance(b, dict) else b
            for b in content
        ],
    }


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
