"""A proxied call's answer, rebuilt from the response that passed through (for the
transcript, so that `replay` and its judge compare a replay with what the client got)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

# The delta fields each block type grows by.
_GROWS = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "signature_delta": "signature",
    "citations_delta": None,
    "input_json_delta": "partial_json",
}


def content_of_events(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The content blocks a stream's content_block_start / content_block_delta events build,
    in index order; None when there were none (nothing to keep)."""
    blocks: dict[int, dict[str, Any]] = {}
    json_parts: dict[int, list[str]] = {}
    text_parts: dict[tuple[int, str], list[str]] = {}  # joined once: a long answer in O(n)
    for event in events:
        kind, index = event.get("type"), event.get("index")
        if not isinstance(index, int):
            continue
        if kind == "content_block_start" and isinstance(event.get("content_block"), dict):
            blocks[index] = dict(event["content_block"])
            continue
        block, delta = blocks.get(index), event.get("delta")
        if kind != "content_block_delta" or block is None or not isinstance(delta, dict):
            continue
        dtype = delta.get("type")
        if dtype == "citations_delta" and isinstance(delta.get("citation"), dict):
            block.setdefault("citations", []).append(delta["citation"])
        elif dtype == "input_json_delta":
            json_parts.setdefault(index, []).append(str(delta.get("partial_json") or ""))
        elif (key := _GROWS.get(str(dtype))) and isinstance(delta.get(key), str):
            text_parts.setdefault((index, key), [str(block.get(key) or "")]).append(delta[key])
    for (index, key), pieces in text_parts.items():
        blocks[index][key] = "".join(pieces)
    for index, parts in json_parts.items():
        text = "".join(parts)
        try:
            blocks[index]["input"] = json.loads(text) if text else {}
        except (ValueError, RecursionError):
            blocks[index]["input"] = {"_unparsed": text}
    return [blocks[i] for i in sorted(blocks)] or None


def content_of_message(message: dict[str, Any]) -> list[dict[str, Any]] | None:
    """A whole Message's content blocks, or None."""
    content = message.get("content")
    if isinstance(content, list) and all(isinstance(b, dict) for b in content):
        return content or None
    return None
