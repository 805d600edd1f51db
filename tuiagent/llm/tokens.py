"""The one local token estimate: used by the offline model (as its own exact count), by the
budget where no count can be had, and by reports that split a turn's input by source.

Calibrated on shared/wire: English prose (count_tokens_then_cache_read: 1,114 real, 1,115
estimated) and digit-heavy text (cache_write_then_read_5m: 1,590 real, about 1,250
estimated, so 22% low). Where it stands in for the real tokenizer, use
`ESTIMATE_SAFETY_MARGIN`.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

# A word piece of up to 7 letters, a single digit, or any other visible character.
_PIECE = re.compile(r"[A-Za-z]+|\d|\S")

# The estimate runs up to 22% low on digit-heavy text (see above): 1.3x covers it.
ESTIMATE_SAFETY_MARGIN = 1.3

# Fixed costs the API adds around content (roles, tool-definition framing), estimated.
PER_MESSAGE_OVERHEAD = 3
PER_TOOL_OVERHEAD = 8
REQUEST_OVERHEAD = 4


@lru_cache(maxsize=8192)
def estimate_tokens(text: str) -> int:
    """Every call re-sends the history: the same strings are counted again and again, and
    a str caches its own hash, so the memo makes re-counting a history nearly free."""
    n = 0
    for match in _PIECE.finditer(text):
        piece = match.group()
        n += -(-len(piece) // 7) if piece[0].isalpha() else 1
    return n


def block_tokens(block: Any) -> int:
    """Tokens of one request block: a content block, a system block or a tool definition."""
    if isinstance(block, str):
        return estimate_tokens(block)
    if not isinstance(block, dict):
        return estimate_tokens(json.dumps(block))
    kind = block.get("type")
    if kind == "text":
        return estimate_tokens(block.get("text", ""))
    if kind == "tool_result":
        content = block.get("content", "")
        if isinstance(content, list):
            return 3 + sum(block_tokens(c) for c in content)
        return 3 + estimate_tokens(str(content))
    if kind == "tool_use":
        return (
            3
            + estimate_tokens(block.get("name", ""))
            + estimate_tokens(json.dumps(block.get("input", {})))
        )
    if kind in ("thinking", "redacted_thinking"):
        return estimate_tokens(block.get("thinking", "") or block.get("data", ""))
    if "input_schema" in block:  # a tool definition
        return _definition_tokens(block)
    return estimate_tokens(json.dumps({k: v for k, v in block.items() if k != "cache_control"}))


# Every estimate (several a call) counts the tool definitions again, and their JSON was the
# dearest part of it. A definition is made of values that are never changed in place (the
# tools' constant schemas), so its count is kept by what it holds: its strings, and the
# identity of its schema and other values, which the entry holds so that no id is reused.
_DEFINITIONS: dict[tuple[Any, ...], tuple[list[Any], int]] = {}
_SCALARS = (str, int, float, bool, type(None))


def _definition_tokens(block: dict[str, Any]) -> int:
    clean = {k: v for k, v in block.items() if k != "cache_control"}
    held = [v for v in clean.values() if not isinstance(v, _SCALARS)]
    key = tuple((k, v if isinstance(v, _SCALARS) else id(v)) for k, v in clean.items())
    known = _DEFINITIONS.get(key)
    if known is not None:
        return known[1]
    if len(_DEFINITIONS) >= 512:
        _DEFINITIONS.clear()
    tokens = PER_TOOL_OVERHEAD + estimate_tokens(json.dumps(clean))
    _DEFINITIONS[key] = (held, tokens)
    return tokens


def request_blocks(request: dict[str, Any]) -> list[tuple[dict[str, Any], int]]:
    """The request's blocks in the order the API reads them (tools, system, messages), each
    with its tokens; a message's framing is counted on its first block."""
    out: list[tuple[dict[str, Any], int]] = [
        (t, block_tokens(t)) for t in request.get("tools") or []
    ]
    system = request.get("system")
    if isinstance(system, str):
        system = [{"type": "text", "text": system}] if system else []
    out.extend((b, block_tokens(b)) for b in system or [])
    for message in request.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        for i, b in enumerate(content or []):
            out.append((b, block_tokens(b) + (PER_MESSAGE_OVERHEAD if i == 0 else 0)))
    return out


def estimate_request_tokens(request: dict[str, Any]) -> int:
    """All input tokens of a Messages request, as the offline model bills them."""
    return REQUEST_OVERHEAD + sum(n for _, n in request_blocks(request))


# What count_tokens accepts of a Messages request (the rest, such as max_tokens, it refuses):
# the agent's client and the proxy both send it only these. Here, not in llm/client, so the
# proxy can use it without importing the SDK.
COUNTED_FIELDS = (
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "cache_control",
    "mcp_servers",
    "context_management",
)
