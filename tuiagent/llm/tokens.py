"""Tokens: the one local estimate before a call, the usage the API reports after it
(`TokenUsage`), and prompt caching: where the breakpoints go, and which tokens of a request
the cache can read (`plan_breakpoints`, `CacheTracker`, at the end).

The estimate is used by the offline model (as its own exact count), by the
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

import base64
import binascii
import copy
import json
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from typing import Any, TypeGuard

from tuiagent.llm.models import rules_like

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
    if kind == "image":
        return image_tokens(block)
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


# Server tools whose results the API reads back into the same request: after each call it
# samples again over the whole input, the result in it (a search's results, a fetched page,
# code's output, an MCP server's answer), and bills that pass's input. Nothing bounds a
# result's size but a web fetch's `max_content_tokens` (web fetch tool documentation);
# tool search apart (`search_result_tokens`).
FED_BACK_TOOLS = ("web_search_", "web_fetch_", "code_execution_", "mcp_toolset")
FETCH_FRAME_TOKENS = 512  # a fetched page's block beside its content (url, title, dates)


@dataclass(frozen=True)
class FedBack:
    """What the results of a request's fed-back server tools can add to its input."""

    uses: int | None  # the most calls of them it allows (their `max_uses`); None: no limit
    tokens: int | None  # the most their results hold in all; None: nothing bounds it


def fed_back_results(request: dict[str, Any]) -> FedBack | None:
    """None when the request offers no server tool whose results are read back."""
    tools = [
        t
        for t in request.get("tools") or []
        if isinstance(t, dict) and str(t.get("type", "")).startswith(FED_BACK_TOOLS)
    ]
    mcp = bool(request.get("mcp_servers"))  # the MCP connector: its tools run on the server
    if not tools and not mcp:
        return None
    uses: int | None = None if mcp else 0
    tokens: int | None = None if mcp else 0
    for tool in tools:
        n, most = tool.get("max_uses"), tool.get("max_content_tokens")
        if not _whole(n):
            uses = tokens = None
            continue
        uses = None if uses is None else uses + n
        fetch = str(tool["type"]).startswith("web_fetch_")
        fetched = n * (most + FETCH_FRAME_TOKENS) if fetch and _whole(most) else None
        tokens = None if tokens is None or fetched is None else tokens + fetched
    return FedBack(uses, tokens)


# Compaction ("Compaction at a token threshold": a `compact_*` edit in `context_management`;
# or on demand, the top-level `compaction` parameter) is one more sampling pass inside the
# request, billed: it reads the whole input and writes a summary, then the answer's pass reads
# the summary and what follows it. With server tools the trigger is checked on every pass.
COMPACT_DEFAULT_TRIGGER = 150_000  # the documented default of `trigger.value`


def compaction_trigger(request: dict[str, Any]) -> int | None:
    """The fewest input tokens at which the request may be compacted; None when it asks for
    no compaction."""
    if request.get("compaction") is not None:
        return 0
    management = request.get("context_management")
    edits = management.get("edits") if isinstance(management, dict) else None
    triggers = []
    for edit in edits if isinstance(edits, list) else []:
        if isinstance(edit, dict) and str(edit.get("type", "")).startswith("compact_"):
            trigger = edit.get("trigger")
            value = trigger.get("value") if isinstance(trigger, dict) else None
            triggers.append(value if _whole(value) else COMPACT_DEFAULT_TRIGGER)
    return min(triggers) if triggers else None


def _whole(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


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


def holds_documents(messages: Any) -> bool:
    """Do these messages hold a document other than plain text (a PDF; in a message, or in
    a tool's result)? The API sizes it by its pages, which nothing here can: a compressed
    PDF's hundred pages are a few KB of base64, a URL's or a file id's none. (An image is
    sized by its pixels: `image_tokens`.)"""
    if not isinstance(messages, list):
        return False
    return any(
        _document(block)
        for message in messages
        if isinstance(message, dict) and isinstance(message.get("content"), list)
        for block in message["content"]
    )


def _document(block: Any) -> bool:
    if not isinstance(block, dict):
        return False
    kind = block.get("type")
    if kind == "tool_result" and isinstance(block.get("content"), list):
        return any(_document(b) for b in block["content"])
    source = block.get("source")
    how = source.get("type") if isinstance(source, dict) else None
    return kind == "document" and how not in ("text", "content")


# An image is billed by its pixels once the API has scaled it to fit its model (the vision
# page, "Evaluate image size"): Opus 4.7 and later, Sonnet 5 and later and Haiku 5.5 take up
# to 2,576 px on the long edge at one token per 28 x 28 px patch, at most 4,784 tokens;
# earlier models up to 1,568 px at about w x h / 750 tokens (about 1,600 at most). Scaling
# only lowers either, so an image is at most the larger of them at its own size, and never
# more than MAX_IMAGE_TOKENS, whatever its source: one by URL or file id, or one whose
# header does not read, is taken at that. The header is read from the first bytes only.
MAX_IMAGE_TOKENS = 4_784
IMAGE_BLOCK_TOKENS = 3  # the image block around its pixels
_HEAD_CHARS = 4 * (256 * 1024 // 3)  # base64 of the first 256 KB: any header's room


def image_tokens(block: dict[str, Any]) -> int:
    """The most an image block can bill, from its pixels (see above)."""
    source = block.get("source")
    size = None
    if isinstance(source, dict) and source.get("type") == "base64":
        data = source.get("data")
        if isinstance(data, str):
            try:
                head = base64.b64decode(data[:_HEAD_CHARS])
            except (binascii.Error, ValueError):
                head = b""
            kind = image_kind(head)
            size = image_size(kind, head) if kind else None
    if size is None:
        return IMAGE_BLOCK_TOKENS + MAX_IMAGE_TOKENS
    w, h = size
    patches = -(-w // 28) * -(-h // 28)
    return IMAGE_BLOCK_TOKENS + min(MAX_IMAGE_TOKENS, max(patches, -(-w * h // 750)))


def image_kind(data: bytes) -> str | None:
    """The media type an image's first bytes say it is (the four the API takes), or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_size(kind: str, data: bytes) -> tuple[int, int] | None:
    """Width and height read from the image's header, or None if it is cut short."""
    try:
        if kind == "image/png":
            return struct.unpack(">II", data[16:24])
        if kind == "image/gif":
            return struct.unpack("<HH", data[6:10])
        if kind == "image/webp":
            return _webp_size(data)
        return _jpeg_size(data)
    except struct.error:
        return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 9 < len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            at += 2
            continue
        length = struct.unpack(">H", data[at + 2 : at + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[at + 5 : at + 9])
            return w, h
        at += 2 + length
    return None


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


# Usage: token usage exactly as the Messages API reports it.
#
# Facts this follows (see shared/wire): `input_tokens` excludes cached tokens; usage in
# `message_delta` is cumulative and overrides `message_start` where present; only
# `message_start` carries the 5m/1h split of cache writes; when the response carries
# `usage.iterations` (server-side compaction), the top level reports only the last
# iteration and the billed usage is the sum of all of them (each pass is kept in
# `iterations`: Anthropic bills each sampling pass as its own request, see cost/pricing.py).
# Server tools the API ran for the call are counted in `usage.server_tool_use`
# (`web_search_requests`, `web_fetch_requests`): they are billed per use, on top of tokens.
# Where and how the call ran (`inference_geo`, `speed`, `service_tier`) is in message_start's
# usage only (or the Message's): it sets the price modifiers the call is settled with.
#
# Every number is checked: a count that is not a non-negative integer below `MAX_TOKENS`
# (a string, a bool, a float, a negative, 1e30) raises `BadUsage`, so no malformed usage is
# ever priced as $0 or as a negative.

_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)
# Counts in usage.server_tool_use (ServerToolUsage in the SDK).
SERVER_TOOL_FIELDS = ("web_search_requests", "web_fetch_requests")
# Where and how the call ran, as reported (strings; absent: not reported).
RAN_AS_FIELDS = ("inference_geo", "speed", "service_tier")
_LONGEST_RAN_AS = 64

MAX_TOKENS = 10**9  # more than any request can bill: a larger count is malformed


class BadUsage(ValueError):
    """A usage object from the server that cannot be what it billed."""


def _tokens(value: object, name: str) -> int:
    """A token count as the API sends it: a non-negative int; null or absent is 0."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
        raise BadUsage(f"usage {name} is {value!r}, not a token count")
    return value


def _split(value: object) -> tuple[int, int] | None:
    """The 5m and 1h cache writes of a `cache_creation` object; None when there is none."""
    if not value:
        return None
    split = _mapping(value, "usage.cache_creation")
    five = _tokens(split.get("ephemeral_5m_input_tokens"), "ephemeral_5m_input_tokens")
    return five, _tokens(split.get("ephemeral_1h_input_tokens"), "ephemeral_1h_input_tokens")


def _server_tools(value: object) -> dict[str, Any]:
    """The counts of a `server_tool_use` object (absent: none used)."""
    counts = _mapping(value, "usage.server_tool_use") if value else {}
    return {k: _tokens(counts.get(k), k) for k in SERVER_TOOL_FIELDS}


def _ran_as(usage: Mapping[str, Any]) -> dict[str, Any]:
    """`inference_geo`, `speed`, `service_tier` as reported: a short string, or None."""
    out: dict[str, Any] = {}
    for key in RAN_AS_FIELDS:
        value = usage.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > _LONGEST_RAN_AS):
            raise BadUsage(f"usage {key} is {value!r}, not a name")
        out[key] = value
    return out


def _mapping(value: object, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BadUsage(f"{name} is {type(value).__name__}, not an object")
    return value


@dataclass(frozen=True)
class TokenUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_creation_5m_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    web_search_requests: int = 0
    web_fetch_requests: int = 0
    # Where and how it ran, when reported (written only when set).
    inference_geo: str | None = field(default=None, metadata={"omit_none": True})
    speed: str | None = field(default=None, metadata={"omit_none": True})
    service_tier: str | None = field(default=None, metadata={"omit_none": True})
    # The sampling passes of a compaction response (usage.iterations), each as billed;
    # empty for an ordinary call. Not part of the record: the sums above are.
    iterations: tuple[TokenUsage, ...] = field(default=(), init=False, compare=False, repr=False)

    @property
    def total_input_tokens(self) -> int:
        """Every input token of the request: uncached + cache writes + cache reads."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        """The sum of two usages (one usage: the passes of either are not kept; where and
        how they ran is kept where both agree)."""
        a, b = self.as_record(), other.as_record()
        values: dict[str, Any] = {k: a[k] + b[k] for k in a}
        for k in RAN_AS_FIELDS:
            if getattr(self, k) == getattr(other, k):
                values[k] = getattr(self, k)
        return TokenUsage(**values)

    def as_record(self) -> dict[str, int]:
        """The counts (where and how it ran aside)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in _COUNTS}

    def ran_as(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in RAN_AS_FIELDS}

    @classmethod
    def from_api(cls, usage: Mapping[str, Any] | None) -> TokenUsage:
        """Usage from one API usage object (a response's, or message_start's)."""
        if usage is None:
            return cls()
        usage = _mapping(usage, "usage")
        tools = _server_tools(usage.get("server_tool_use"))
        iterations = usage.get("iterations")
        if iterations:
            if not isinstance(iterations, list):
                raise BadUsage("usage.iterations is not a list")
            passes = tuple(
                cls.from_api(
                    {
                        k: v
                        for k, v in _mapping(item, "a usage.iterations entry").items()
                        if k != "iterations"
                    }
                )
                for item in iterations
            )
            total = replace(
                sum(passes, cls()),
                web_search_requests=tools["web_search_requests"],
                web_fetch_requests=tools["web_fetch_requests"],
                **_ran_as(usage),
            )
            object.__setattr__(total, "iterations", passes)  # frozen: set once, here
            return total
        values: dict[str, Any] = {k: _tokens(usage.get(k), k) for k in _FIELDS}
        # No split reported: the API's default lifetime is 5 minutes.
        five, hour = _split(usage.get("cache_creation")) or (
            values["cache_creation_input_tokens"],
            0,
        )
        return cls(
            **values,
            **tools,
            **_ran_as(usage),
            cache_creation_5m_input_tokens=five,
            cache_creation_1h_input_tokens=hour,
        )

    def with_delta(self, delta: Mapping[str, Any] | None) -> TokenUsage:
        """Apply a cumulative message_delta usage: values present override, the split stays."""
        if delta is None:
            return self
        delta = _mapping(delta, "usage")
        if not delta:
            return self
        if delta.get("iterations"):
            merged = TokenUsage.from_api(delta)
            # iterations carry their own split; keep it (and where message_start ran)
            return replace(merged, **{k: v for k, v in self.ran_as().items() if v is not None})
        _split(delta.get("cache_creation"))  # checked; the split stays message_start's
        values: dict[str, Any] = {k: getattr(self, k) for k in _FIELDS}
        for k in _FIELDS:
            if delta.get(k) is not None:
                values[k] = _tokens(delta[k], k)
        tools: dict[str, Any] = {k: getattr(self, k) for k in SERVER_TOOL_FIELDS}
        if delta.get("server_tool_use"):
            tools = _server_tools(delta["server_tool_use"])
        five, hour = self.cache_creation_5m_input_tokens, self.cache_creation_1h_input_tokens
        writes = values["cache_creation_input_tokens"]
        if five + hour != writes:
            # message_delta changed the write total without a split: keep the 1h part
            # that message_start reported and put the rest on 5m.
            hour = min(hour, writes)
            five = writes - hour
        return TokenUsage(
            **values,
            **tools,
            **self.ran_as(),
            cache_creation_5m_input_tokens=five,
            cache_creation_1h_input_tokens=hour,
        )


_COUNTS = frozenset(
    f.name for f in fields(TokenUsage) if f.name != "iterations" and f.name not in RAN_AS_FIELDS
)


# Prompt caching: where the breakpoints go, and the rules both the planner and the offline
# model follow. The minimum cacheable prefix of each model (below it a breakpoint silently
# caches nothing) is in the one table of model rules, `tuiagent.llm.models`, with its sources.

MAX_BREAKPOINTS = 4
LOOKBACK_BLOCKS = 20
TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}

DEFAULT_MIN_CACHEABLE_TOKENS = 1024


def min_cacheable_tokens(model: str) -> int:
    """The model's minimum, or 1,024 (the most common one) for a model not in the table."""
    rules = rules_like(model)
    return rules.min_cacheable if rules else DEFAULT_MIN_CACHEABLE_TOKENS


def marker(ttl: str) -> dict[str, str]:
    return {"type": "ephemeral", "ttl": ttl}


def plan_breakpoints(
    request: dict[str, Any], model: str, ttl: str = "5m", hold: Iterable[int] = ()
) -> dict[str, Any]:
    """A copy of `request` with cache_control breakpoints placed.

    One at the end of the stable prefix (the tools in the prompt, deferred ones aside, and
    system) when that alone is above the model's minimum; one at the last block of each
    message index in `hold` (the end of the history's settled part, which clearing old tool
    results no longer edits: an edit after it rewrites only what follows); one rolling at
    the last block of the conversation, so every call reads everything the previous call
    wrote. Never more than MAX_BREAKPOINTS;
    none below the minimum (it would cache nothing, and on the API a marker there is
    silently ignored).
    """
    out = _with_own_blocks(request)
    # Markers go on blocks, so plain-string system and content become block lists.
    if isinstance(out.get("system"), str):
        out["system"] = [{"type": "text", "text": out["system"]}] if out["system"] else []
    for message in out.get("messages", []):
        if isinstance(message.get("content"), str):
            message["content"] = [{"type": "text", "text": message["content"]}]
    minimum = min_cacheable_tokens(model)
    n_stable = len(prompt_tools(out)) + len(out.get("system") or [])
    blocks = request_blocks(out)
    running = REQUEST_OVERHEAD
    prefix_tokens: list[int] = []
    for _, n in blocks:
        running += n
        prefix_tokens.append(running)
    chosen: list[int] = []
    if n_stable and prefix_tokens[n_stable - 1] >= minimum:
        chosen.append(n_stable - 1)
    ends, at = [], n_stable
    for message in out.get("messages", []):
        at += len(message.get("content") or [])
        ends.append(at - 1)
    for index in sorted(set(hold)):
        end = ends[index] if 0 <= index < len(ends) - 1 else -1
        if end >= 0 and prefix_tokens[end] >= minimum and end not in chosen:
            chosen.append(end)
    last = len(blocks) - 1
    if last >= 0 and prefix_tokens[last] >= minimum and last not in chosen:
        chosen.append(last)
    # Too many: the rolling end and the latest held ones are kept.
    if len(chosen) > MAX_BREAKPOINTS:
        chosen = chosen[:1] + chosen[len(chosen) - MAX_BREAKPOINTS + 1 :]
    for idx in chosen:
        blocks[idx][0]["cache_control"] = marker(ttl)
    return out


def _with_own_blocks(request: dict[str, Any]) -> dict[str, Any]:
    """A copy of `request` whose lists, messages and blocks are its own, for markers to be
    set on; what the blocks hold (texts, tool inputs, schemas) is shared and never changed.
    A deep copy of the whole conversation on every call cost more than all the rest."""

    def own(blocks: Any) -> Any:
        return (
            [dict(b) if isinstance(b, dict) else b for b in blocks]
            if isinstance(blocks, list)
            else blocks
        )

    out = dict(request)
    for key in ("tools", "system"):
        if key in out:
            out[key] = own(out[key])
    if isinstance(out.get("messages"), list):
        out["messages"] = [
            {**m, "content": own(m.get("content"))} if isinstance(m, dict) and "content" in m else m
            for m in out["messages"]
        ]
    return out


def without_breakpoints(request: dict[str, Any]) -> dict[str, Any]:
    """A copy of `request` with every cache_control marker removed: it can write nothing to
    the cache, so none of its input can be billed at the write premium."""
    out = copy.deepcopy(request)
    out.pop("cache_control", None)
    for block, _ in request_blocks(out):
        block.pop("cache_control", None)
    return out


def api_miss_reason(diagnostics: dict[str, Any] | None) -> str | None:
    """`diagnostics.cache_miss_reason` as the API sends it: an object with a `type`."""
    reason = (diagnostics or {}).get("cache_miss_reason")
    if isinstance(reason, dict):
        kind = reason.get("type")
        return str(kind) if kind else None
    return str(reason) if isinstance(reason, str) else None


def count_breakpoints(request: dict[str, Any]) -> int:
    return sum(1 for b, _ in request_blocks(request) if "cache_control" in b) + (
        1 if "cache_control" in request else 0
    )


@dataclass
class ModelCache:
    """What one model's prompt cache holds for this conversation, as the client sees it."""

    cached_prefix_tokens: int = 0
    ttl: str = "5m"
    last_write_at: float | None = None
    last_read_at: float | None = None
    expires_at: float | None = None


class CacheTracker:
    """Per model: cached prefix tokens, last write and read, expiry (wall-clock seconds).

    Built from the usage the API reports after each call: reads refresh an entry's lifetime,
    writes start one. The router asks it what is warm; the UI counts down to expiry.
    """

    def __init__(self) -> None:
        self.models: dict[str, ModelCache] = {}
        self.last_model: str | None = None
        # The previous call's message id: the API's diagnostics compare against it.
        self.last_message_id: str | None = None

    def cached_prefix_tokens(self, model: str, now: float) -> int:
        state = self.models.get(model)
        if state is None or state.expires_at is None or now >= state.expires_at:
            return 0
        return state.cached_prefix_tokens

    def note(
        self, model: str, usage: TokenUsage, ttl: str, now: float, message_id: str | None
    ) -> ModelCache:
        state = self.models.setdefault(model, ModelCache())
        cached = usage.cache_read_input_tokens + usage.cache_creation_input_tokens
        if usage.cache_read_input_tokens:
            state.last_read_at = now
        if usage.cache_creation_input_tokens:
            state.last_write_at = now
        if cached:
            state.cached_prefix_tokens = cached
            state.ttl = "1h" if usage.cache_creation_1h_input_tokens else ttl
            state.expires_at = now + TTL_SECONDS[state.ttl]
        self.last_message_id = message_id or self.last_message_id
        self.last_model = model
        return state

    def miss_reason(
        self,
        model: str,
        usage: TokenUsage,
        now: float,
        request: dict[str, Any],
        api_reason: str | None,
        enabled: bool = True,
    ) -> str | None:
        """Why this call did not read what this conversation had cached (None on a full hit,
        or when nothing was cached yet). The API's diagnosis where it gives one; what only
        the client knows (an entry that outlived its lifetime, a prefix below the minimum)
        first."""
        if not enabled:
            return None
        before = self.models.get(model)
        expected = before.cached_prefix_tokens if before else 0
        if count_breakpoints(request) == 0:
            if _prefix_tokens(request) < min_cacheable_tokens(model):
                return "below_minimum"
            # Caching is on and the prefix was warm, yet the call went without markers: close
            # to the cap, they were dropped so that its worst case fit (no write premium).
            warm = before is not None and before.expires_at is not None and now < before.expires_at
            return "dropped_to_fit_cap" if warm and expected else None
        if self.last_model is not None and self.last_model != model and not expected:
            return "model_changed"
        if not expected or usage.cache_read_input_tokens >= expected:
            return None
        if before is not None and before.expires_at is not None and now >= before.expires_at:
            return "expired"
        return api_reason or "unavailable"


def _prefix_tokens(request: dict[str, Any]) -> int:
    return REQUEST_OVERHEAD + sum(n for _, n in request_blocks(request))
