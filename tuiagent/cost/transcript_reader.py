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


def load_messages(path: Path) -> list[dict[str, Any]]:
    messages: dict[int, dict[str, Any]] = {}
    for rec in _read(path):
        if rec.get("kind") == "message":
            messages[int(rec["index"])] = rec["message"]
    return [messages[i] for i in range(len(messages)) if i in messages]


def load_requests(path: Path) -> list[dict[str, Any]]:
    """Every request of the run, rebuilt exactly, with its `turn` and `purpose`."""
    records = _read(path)
    messages = load_messages(path)
    out = []
    for rec in records:
        if rec.get("kind") != "request":
            continue
        if "messages" not in rec:  # a helper call, kept whole
            out.append({"turn": rec["turn"], "purpose": rec["purpose"], "request": rec["request"]})
            continue
        request = copy.deepcopy(rec["request"])
        sent = copy.deepcopy(messages[: rec["messages"]])
        for mi, bi, marker in rec.get("marks", []):
            sent[mi]["content"][bi]["cache_control"] = marker
        request["messages"] = sent
        out.append(
            {"turn": rec["turn"], "purpose": rec.get("purpose", "agent"), "request": request}
        )
    return out
