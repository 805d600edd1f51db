"""Reading a run's transcript (`transcripts/<run_id>.jsonl`, written by agent/transcript.py).

Owned by cost: the report splits input by source from it and replay resends its requests, and
cost must not import the agent loop.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any


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
    sent (against the history as it stood then: clearing and compaction edit it)."""
    history: list[dict[str, Any]] = []
    out = []
    for rec in _read(path):
        kind = rec.get("kind")
        if kind == "messages_from":
            history = history[: int(rec["index"])]  # a new list: earlier requests keep theirs
        elif kind == "message" and int(rec["index"]) == len(history):
            history.append(rec["message"])
        elif kind == "request" and "messages" not in rec:  # a helper call, kept whole
            out.append({"turn": rec["turn"], "purpose": rec["purpose"], "request": rec["request"]})
        elif kind == "request":
            request = copy.deepcopy(rec["request"])
            sent = copy.deepcopy(history[: rec["messages"]])
            for mi, bi, marker in rec.get("marks", []):
                sent[mi]["content"][bi]["cache_control"] = marker
            request["messages"] = sent
            out.append(
                {"turn": rec["turn"], "purpose": rec.get("purpose", "agent"), "request": request}
            )
    return history, out


def load_messages(path: Path) -> list[dict[str, Any]]:
    """The conversation as the run left it (after any clearing, compaction or /clear)."""
    return _replay(path)[0]


def load_requests(path: Path) -> list[dict[str, Any]]:
    """Every request of the run, rebuilt exactly, with its `turn` and `purpose`."""
    return _replay(path)[1]
