"""What the offline model says: deterministic, from the request alone.

It picks tools from what the user asked, one call per turn, in the order the request names
them: "list / files / largest" lists the workspace, each workspace file named is read,
"search / find / grep X" searches, "expand" pages in a compressed result. Then it answers
from the tool results. When it cannot help it says so plainly.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

OFFLINE_NOTICE = "OFFLINE - simulated model"

_LIST_WORDS = re.compile(
    r"\b(list|files|largest|biggest|smallest|directory|folder|workspace|ls)\b", re.IGNORECASE
)
_FILE_NAME = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*[\w-]+\.[A-Za-z0-9]{1,8})(?![\w/-])")
_SEARCH = re.compile(
    r"\b(?:search(?:\s+for)?|grep(?:\s+for)?|find|look\s+for)\s+"
    r"(?:\"([^\"]+)\"|'([^']+)'|`([^`]+)`|([^\s\"'`?,.;:!]+))",
    re.IGNORECASE,
)
_NOT_A_PATTERN = {
    "the",
    "a",
    "an",
    "all",
    "any",
    "which",
    "what",
    "where",
    "out",
    "me",
    "files",
    "file",
    "largest",
    "biggest",
    "smallest",
    "every",
    "each",
    "in",
    "here",
    "how",
    "it",
    "this",
}
_EXPAND = re.compile(r"\bexpand\b.*?\b(r\d+)\b", re.IGNORECASE)
LISTING_LINE = re.compile(r"^(file|dir|link)\s+([\d,]+|-)\s+(?:bytes\s+)?(.+)$")


@dataclass(frozen=True)
class PlannedCall:
    name: str
    input: dict[str, Any]


@dataclass
class Reply:
    """The model's turn: optional text, then at most one tool call."""

    text: str
    tool_call: PlannedCall | None = None


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content or [])


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content", "")
    if isinstance(content, list):
        return "".join(c.get("text", "") for c in content if isinstance(c, dict))
    return str(content)


def current_task(messages: list[dict[str, Any]]) -> tuple[str, list[tuple[PlannedCall, str, bool]]]:
    """The latest user request and the tool calls made for it since, with their results."""
    start = 0
    for i, m in enumerate(messages):
        if m.get("role") == "user" and any(b.get("type") == "text" for b in _blocks(m)):
            start = i
    request = (
        " ".join(b.get("text", "") for b in _blocks(messages[start]) if b.get("type") == "text")
        if messages
        else ""
    )
    results: dict[str, tuple[str, bool]] = {}
    calls: list[tuple[str, PlannedCall]] = []
    for m in messages[start + 1 :]:
        for b in _blocks(m):
            if b.get("type") == "tool_use":
                calls.append(
                    (b.get("id", ""), PlannedCall(b.get("name", ""), dict(b.get("input") or {})))
                )
            elif b.get("type") == "tool_result":
                results[b.get("tool_use_id", "")] = (_result_text(b), bool(b.get("is_error")))
    done = [(call, *results.get(tid, ("", True))) for tid, call in calls]
    return request, done


def plan_calls(request: str, tool_names: set[str], known_files: set[str]) -> list[PlannedCall]:
    """The tool calls the request asks for, in the order it names them."""
    found: list[tuple[int, PlannedCall]] = []
    if "list_dir" in tool_names and (m := _LIST_WORDS.search(request)):
        found.append((m.start(), PlannedCall("list_dir", {"path": "."})))
    if "read_file" in tool_names:
        names = {m.group(1): m.start() for m in _FILE_NAME.finditer(request)}
        for name in known_files:
            hit = re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", request)
            if hit and name not in names:
                names[name] = hit.start()
        for name, pos in names.items():
            found.append((pos, PlannedCall("read_file", {"path": name})))
    if "search_files" in tool_names:
        for m in _SEARCH.finditer(request):
            pattern = next(g for g in m.groups() if g)
            if pattern.lower() in _NOT_A_PATTERN:
                continue
            found.append((m.start(), PlannedCall("search_files", {"pattern": pattern})))
    if "expand_result" in tool_names:
        for m in _EXPAND.finditer(request):
            found.append((m.start(), PlannedCall("expand_result", {"result_id": m.group(1)})))
    found.sort(key=lambda pair: pair[0])
    plan: list[PlannedCall] = []
    for _, call in found:
        if call not in plan:
            plan.append(call)
    return plan


def parse_listing(text: str) -> list[tuple[str, str, int | None]]:
    rows = []
    for line in text.splitlines():
        m = LISTING_LINE.match(line.strip())
        if m:
            size = None if m.group(2) == "-" else int(m.group(2).replace(",", ""))
            rows.append((m.group(1), m.group(3), size))
    return rows


def _first_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line and not line.startswith("["):
            return line[:120]
    return "(empty)"


def _describe(call: PlannedCall, result: str, is_error: bool, request: str) -> str:
    if is_error:
        what = call.input.get("path") or call.input.get("pattern") or call.name
        return f"I could not use {call.name} on {what}: {result.strip().splitlines()[0] if result.strip() else 'error'}"
    if call.name == "list_dir":
        rows = parse_listing(result)
        files = [(n, s) for k, n, s in rows if k == "file" and s is not None]
        dirs = [n for k, n, _ in rows if k == "dir"]
        parts = [f"The workspace has {len(files)} files and {len(dirs)} folders."]
        if files and re.search(r"\b(largest|biggest)\b", request, re.IGNORECASE):
            name, size = max(files, key=lambda f: (f[1], f[0]))
            parts.append(f"The largest file is {name} ({size:,} bytes).")
        elif files and re.search(r"\bsmallest\b", request, re.IGNORECASE):
            name, size = min(files, key=lambda f: (f[1], f[0]))
            parts.append(f"The smallest file is {name} ({size:,} bytes).")
        else:
            shown = ", ".join(n for n, _ in files[:12]) + (" ..." if len(files) > 12 else "")
            if shown:
                parts.append(f"Files: {shown}.")
            if dirs:
                parts.append("Folders: " + ", ".join(dirs[:12]) + ".")
        return " ".join(parts)
    if call.name == "read_file":
        lines = result.count("\n") + 1
        return f"{call.input.get('path')}: {_first_line(result)} ({lines} lines seen)."
    if call.name == "search_files":
        matches = [ln for ln in result.splitlines() if re.match(r"^\S+:\d+:", ln)]
        hit_files = {ln.split(":", 1)[0] for ln in matches}
        head = result.strip().splitlines()[0] if result.strip() else ""
        if not matches and "match" in head.lower():
            return f"Search for {call.input.get('pattern')!r}: {head}"
        return f"Search for {call.input.get('pattern')!r}: {len(matches)} matching lines in {len(hit_files)} files."
    if call.name == "expand_result":
        return f"Expanded {call.input.get('result_id')}: {_first_line(result)}"
    return f"{call.name}: {_first_line(result)}"


def reply(request_body: dict[str, Any]) -> Reply:
    """The next turn for this request: a tool call it still needs, or the answer."""
    messages = request_body.get("messages") or []
    tool_names = {t.get("name", "") for t in request_body.get("tools") or []}
    request, done = current_task(messages)
    known_files: set[str] = set()
    for call, result, is_error in done:
        if call.name == "list_dir" and not is_error:
            known_files.update(n for k, n, _ in parse_listing(result) if k == "file")
    plan = plan_calls(request, tool_names, known_files)
    made = [c for c, _, _ in done]
    for call in plan:
        if call not in made:
            return Reply(text=_lead_in(call), tool_call=call)
    if not done:
        return Reply(
            text=(
                "I am tuiagent's offline simulated model, not Claude. I can list, read and "
                "search the files of this workspace, but I could not map this request to one "
                "of those. Set ANTHROPIC_API_KEY to talk to Claude."
            )
        )
    return Reply(text="\n".join(_describe(c, r, e, request) for c, r, e in done))


def _lead_in(call: PlannedCall) -> str:
    if call.name == "list_dir":
        return "Let me list the workspace."
    if call.name == "read_file":
        return f"Let me read {call.input.get('path')}."
    if call.name == "search_files":
        return f"Let me search for {json.dumps(call.input.get('pattern'))}."
    return f"Let me call {call.name}."
