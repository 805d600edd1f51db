"""The run's transcript, beside its log: `transcripts/<run_id>.jsonl` in the log dir.

The run log says what each call cost; the transcript keeps what each call sent, so a turn
can be replayed exactly, split by where its input came from, or a session resumed. Each
message is written once, as the history grows; each request is written as its own fields
plus how many messages it sent and where its cache markers sat, so the file grows with the
conversation, not with its square.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# Reading a transcript is the report's and resume's business, so it lives in cost (which must
# not import the agent); re-exported here for the callers that read beside the writer.
from tuiagent.cost.transcript_reader import load_messages, load_requests
from tuiagent.redact import redact

__all__ = ["Transcript", "load_messages", "load_requests", "transcript_path"]


def transcript_path(log_path: Path) -> Path:
    """Kept in a folder of its own so that `runs/*.jsonl` lists only run logs."""
    folder = log_path.parent / "transcripts"
    folder.mkdir(exist_ok=True)
    return folder / log_path.name


def subagent_transcript_path(log_path: Path, agent: str) -> Path:
    """A sub-agent's own conversation: `transcripts/<run_id>/<agent>.jsonl`, out of the way
    of the run transcripts (which --resume and the report list)."""
    folder = log_path.parent / "transcripts" / log_path.stem
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{agent}.jsonl"


class Transcript:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._messages_written = 0

    def _append(self, *records: dict[str, Any]) -> None:
        """The records in one write (a call's new messages and its request go together)."""
        lines = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        if lines:
            os.write(self._fd, redact(lines).encode())

    def request(self, turn: int, purpose: str, request: dict[str, Any]) -> None:
        """The exact request of one call (after cache markers and budget clamps)."""
        if purpose != "agent":
            # A helper call (a summary) has messages of its own, not the history: kept whole.
            self._append({"kind": "request", "turn": turn, "purpose": purpose, "request": request})
            return
        messages = request.get("messages", [])
        new = self._new_messages(messages)
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
        )

    def messages(self, messages: list[dict[str, Any]]) -> None:
        """Write the messages not yet written (also at the end, so a resume sees the answer)."""
        self._append(*self._new_messages(messages))

    def _new_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        new = [
            {"kind": "message", "index": i, "message": _without_marks(messages[i])}
            for i in range(self._messages_written, len(messages))
        ]
        self._messages_written = max(self._messages_written, len(messages))
        return new

    def rewrite(self, messages: list[dict[str, Any]], first_changed: int) -> None:
        """The history was edited from `first_changed` on (results cleared, a compaction,
        /clear): what follows supersedes the messages from there, so each request written
        before still rebuilds as it was sent."""
        self._messages_written = first_changed
        self._append(
            {"kind": "messages_from", "index": first_changed}, *self._new_messages(messages)
        )

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
