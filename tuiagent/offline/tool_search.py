"""The API's tool search, as the offline model runs it (platform.claude.com/docs/en/
agents-and-tools/tool-use/tool-search-tool).

A request that offers a tool search tool (`tool_search_tool_regex_20251119` or
`tool_search_tool_bm25_20251119`) may mark definitions `defer_loading: true`: the model does
not see them until a search loads them. A search is the model's `server_tool_use` (its
`query`: a Python regex of at most 200 characters for the regex variant, words for BM25),
answered in the same response by a `tool_search_tool_result` whose `tool_references` name
the 3-5 most relevant deferred tools (names, descriptions, argument names and argument
descriptions are searched); the API expands each reference into the full definition, and
the model calls the tool it found. Errors come back as a `tool_search_tool_result_error`
with an `error_code` (`invalid_pattern`, `pattern_too_long`: the documentation's codes for a
regex; the SDK's type, 2.17, lists `invalid_tool_input` instead and does not check it).
"""

from __future__ import annotations

import re
from typing import Any

from tuiagent.llm.tokens import SEARCH_RESULTS, deferred, references

# Tool types of the search tool (dated, and the undated names the SDK also accepts), by name.
SEARCH_TOOLS = {
    "tool_search_tool_regex_20251119": "tool_search_tool_regex",
    "tool_search_tool_regex": "tool_search_tool_regex",
    "tool_search_tool_bm25_20251119": "tool_search_tool_bm25",
    "tool_search_tool_bm25": "tool_search_tool_bm25",
}
MAX_PATTERN = 200  # "Maximum 200 characters for regex patterns"
_WORDS = re.compile(r"[a-z0-9]+")


def search_tool(body: dict[str, Any]) -> str | None:
    """The name of the request's tool search tool, or None when it offers none."""
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and str(tool.get("type", "")) in SEARCH_TOOLS:
            return SEARCH_TOOLS[str(tool["type"])]
    return None


def loaded(body: dict[str, Any]) -> set[str]:
    """The tools earlier searches in the conversation loaded."""
    out: set[str] = set()
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else []:
            out.update(references(block))
    return out


def unseen(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The deferred definitions the model has not seen yet (no search loaded them)."""
    seen = loaded(body)
    return {
        str(t.get("name")): t
        for t in body.get("tools") or []
        if deferred(t) and str(t.get("name")) not in seen
    }


def request_error(body: dict[str, Any]) -> str | None:
    """The 400s the API documents for deferred tools."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    if tools and all(deferred(t) for t in tools):
        return "All tools have defer_loading set. At least one tool must be non-deferred."
    missing = sorted(loaded(body) - {str(t.get("name")) for t in tools})
    if missing:
        return f"Tool reference '{missing[0]}' has no corresponding tool definition"
    return None


def query_for(tool: str, search: str) -> str:
    """What the model searches for to find `tool`: its name as a regex, or as words."""
    if search == "tool_search_tool_bm25":
        return " ".join(_WORDS.findall(tool.lower()))
    return re.escape(tool)


def _searchable(tool: dict[str, Any]) -> list[str]:
    """A definition's name, description, argument names and argument descriptions."""
    texts = [str(tool.get("name", "")), str(tool.get("description", ""))]
    schema = tool.get("input_schema") or {}
    properties = schema.get("properties") if isinstance(schema, dict) else None
    for arg, spec in (properties or {}).items():
        texts.append(str(arg))
        if isinstance(spec, dict) and spec.get("description"):
            texts.append(str(spec["description"]))
    return texts


def run(search: str, query: str, catalogue: list[dict[str, Any]]) -> dict[str, Any]:
    """The `content` of a `tool_search_tool_result`: the deferred tools `query` finds in
    `catalogue`, best first, or an error."""
    if search == "tool_search_tool_bm25":
        terms = set(_WORDS.findall(query.lower()))
        scored = []
        for i, tool in enumerate(catalogue):
            words = _WORDS.findall(" ".join(_searchable(tool)).lower())
            score = sum(words.count(t) for t in terms)
            name_hits = len(terms & set(_WORDS.findall(str(tool.get("name", "")).lower())))
            if score:
                scored.append((-name_hits, -score, i, tool))
        found = [t for *_, t in sorted(scored, key=lambda s: s[:3])]
    else:
        if len(query) > MAX_PATTERN:
            return {"type": "tool_search_tool_result_error", "error_code": "pattern_too_long"}
        try:
            pattern = re.compile(query)
        except re.error:
            return {"type": "tool_search_tool_result_error", "error_code": "invalid_pattern"}
        by_name = [t for t in catalogue if pattern.search(str(t.get("name", "")))]
        others = [
            t
            for t in catalogue
            if t not in by_name and any(pattern.search(x) for x in _searchable(t))
        ]
        found = by_name + others
    return {
        "type": "tool_search_tool_search_result",
        "tool_references": [
            {"type": "tool_reference", "tool_name": str(t.get("name"))}
            for t in found[:SEARCH_RESULTS]
        ],
    }
