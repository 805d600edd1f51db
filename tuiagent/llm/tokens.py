"""The one local token estimate: used by the offline model (as its own exact count), by the
budget where no count can be had, and by reports that split a turn's input by source.

Tool search (platform.claude.com/docs/en/agents-and-tools/tool-use/tool-search-tool): a
tool definition with `defer_loading: true` is not in the prompt ("Claude sees only the tool
search tool and any non-deferred tools initially"); a search loads a few of them, as
`tool_reference` blocks that the API expands into the full definitions, wherever they sit in
the conversation (a `tool_search_tool_result`, or a client's own search's `tool_result`).
So a deferred definition counts only where a reference to it does, and `loadable_tokens`
is the most one answer's searches can load.

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
    clean = {k: v for k, v in block.items() if k not in ("cache_control", "defer_loading")}
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


# The most tools one search returns (tool search tool documentation: "returns 3-5 most
# relevant tools"), and an id as long as any the API gives a server tool call.
SEARCH_RESULTS = 5
_LONGEST_SEARCH_ID = "srvtoolu_" + "x" * 40


def deferred(tool: Any) -> bool:
    """A tool definition kept out of the prompt until a tool search loads it."""
    return isinstance(tool, dict) and tool.get("defer_loading") is True


def prompt_tools(request: dict[str, Any]) -> list[Any]:
    """The request's tool definitions that are in its prompt (not deferred)."""
    return [t for t in request.get("tools") or [] if not deferred(t)]


def references(block: Any) -> list[str]:
    """The tools a block's `tool_reference`s load: a tool search's result (the API's own
    `tool_search_tool_result`, or a client's search answered in a `tool_result`)."""
    if not isinstance(block, dict):
        return []
    kind, content = block.get("type"), block.get("content")
    if kind == "tool_search_tool_result" and isinstance(content, dict):
        refs = content.get("tool_references")
    elif kind == "tool_result":
        refs = content
    else:
        return []
    return [
        r["tool_name"]
        for r in (refs if isinstance(refs, list) else [])
        if isinstance(r, dict)
        and r.get("type") == "tool_reference"
        and isinstance(r.get("tool_name"), str)
    ]


def _deferred_definitions(request: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        t["name"]: t
        for t in request.get("tools") or []
        if deferred(t) and isinstance(t.get("name"), str)
    }


def loaded_tokens(block: Any, request: dict[str, Any]) -> int:
    """The tokens of the deferred definitions (of `request`) that `block` loads."""
    return _loads(block, _deferred_definitions(request))


def _loads(block: Any, loadable: dict[str, dict[str, Any]]) -> int:
    return sum(block_tokens(loadable[t]) for t in references(block) if t in loadable)


def loadable_tokens(request: dict[str, Any]) -> int:
    """The deferred definitions' tokens: what one answer's tool searches can load into its
    input (each definition once)."""
    return sum(block_tokens(t) for t in _deferred_definitions(request).values())


def offers_tool_search(request: dict[str, Any]) -> bool:
    """The request offers the API's tool search tool (either variant, dated or not)."""
    return any(
        isinstance(t, dict) and str(t.get("type", "")).startswith("tool_search_tool_")
        for t in request.get("tools") or []
    )


def search_result_tokens(request: dict[str, Any]) -> int:
    """The most one search's `tool_search_tool_result` block takes in its answer's input,
    the definitions it loads aside: SEARCH_RESULTS references to the longest-named deferred
    tools. 0 when the request offers no search tool or defers nothing."""
    names = sorted(_deferred_definitions(request), key=estimate_tokens, reverse=True)
    if not names or not offers_tool_search(request):
        return 0
    refs = [{"type": "tool_reference", "tool_name": n} for n in names[:SEARCH_RESULTS]]
    return block_tokens(
        {
            "type": "tool_search_tool_result",
            "tool_use_id": _LONGEST_SEARCH_ID,
            "content": {"type": "tool_search_tool_search_result", "tool_references": refs},
        }
    )


def request_blocks(request: dict[str, Any]) -> list[tuple[dict[str, Any], int]]:
    """The request's blocks in the order the API reads them (the tools in the prompt,
    system, messages), each with its tokens; a message's framing is counted on its first
    block, and the definitions a block's tool references load on that block."""
    out: list[tuple[dict[str, Any], int]] = [(t, block_tokens(t)) for t in prompt_tools(request)]
    system = request.get("system")
    if isinstance(system, str):
        system = [{"type": "text", "text": system}] if system else []
    out.extend((b, block_tokens(b)) for b in system or [])
    loadable = _deferred_definitions(request)
    for message in request.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        for i, b in enumerate(content or []):
            n = block_tokens(b) + (PER_MESSAGE_OVERHEAD if i == 0 else 0)
            if loadable:
                n += _loads(b, loadable)
            out.append((b, n))
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
