"""What the offline model says: deterministic, from the request alone.

It picks tools from what the user asked, one call per turn, in the order the request names
them: "list / files / largest" lists the workspace, each workspace file named is read,
"search / find / grep X" searches, "expand rN [lines A-B]" pages in a compressed result,
"run `CMD`" runs a command and a URL is fetched (when those tools are offered). Then it answers
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
_EXPAND = re.compile(
    r"\bexpand\b.*?\b(r\d+)\b(?:[^.;!?]*?\b(?:lines?|from|offset)\s*(\d+)(?:\s*(?:-|to)\s*(\d+))?)?",
    re.IGNORECASE,
)
_RUN = re.compile(r"\b(?:run|execute)\s+`([^`]+)`", re.IGNORECASE)
_URL = re.compile(r"\bhttps?://[^\s\"'<>`]+[^\s\"'<>`.,;:!?)]")
# A summarize request (tuiagent.agent.compress.SUMMARIZE_SYSTEM starts with it).
SUMMARIZE_MARKER = "[tuiagent:summarize]"
# A judge request (tuiagent.agent.experiment.JUDGE_SYSTEM starts with it).
JUDGE_MARKER = "[tuiagent:judge]"
_JUDGED = re.compile(r"<original>\n?(.*?)\n?</original>\s*<replay>\n?(.*?)\n?</replay>", re.DOTALL)
_WORD = re.compile(r"\w+")
# The note that opens a compressed tool result (tuiagent.agent.compress).
_COMPRESSED = re.compile(
    r"^\[(r\d+): \S+ result compressed from ([\d,]+) tokens \((\w+)\)\. (.*?)\. expand_result"
)
_SUMMARISED = re.compile(r"^\[(r\d+): \S+ result of ([\d,]+) tokens, summarised by ([^;]+);")
_EXPANDED = re.compile(r"^\[(r\d+) lines (\d+)-(\d+) of (\d+)")
_IN_ALL = re.compile(r"\((\d[\d,]*) in all\)")
_LEVEL_WORD = re.compile(r"\b(FATAL|CRITICAL|ERROR|WARN(?:ING)?)\b")
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
        urls = [m.span() for m in _URL.finditer(request)]
        names: dict[str, int] = {}
        for m in _FILE_NAME.finditer(request):
            if not any(a <= m.start() < b for a, b in urls):
                names.setdefault(m.group(1), m.start())  # where the request first names it
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
            args: dict[str, Any] = {"result_id": m.group(1)}
            if m.group(2):
                args["offset"] = int(m.group(2))
                if m.group(3) and int(m.group(3)) >= int(m.group(2)):
                    args["limit"] = int(m.group(3)) - int(m.group(2)) + 1
            found.append((m.start(), PlannedCall("expand_result", args)))
    if "run_command" in tool_names:
        for m in _RUN.finditer(request):
            found.append((m.start(), PlannedCall("run_command", {"command": m.group(1)})))
    if "fetch_url" in tool_names:
        for m in _URL.finditer(request):
            found.append((m.start(), PlannedCall("fetch_url", {"url": m.group(0)})))
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


def _json_value(text: str) -> Any:
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        return None
    try:
        return json.loads(stripped)
    except (json.JSONDecodeError, RecursionError):
        return None


def _count(value: list[Any]) -> int:
    """Items in an array, read from a compressed array's '(N in all)' marker if it has one."""
    if value and isinstance(value[-1], str) and (m := _IN_ALL.search(value[-1])):
        return int(m.group(1).replace(",", ""))
    return len(value)


def describe_json(value: Any) -> str:
    if isinstance(value, dict):
        keys = [k for k in value if k != "…"]
        parts = [
            f"a JSON object with keys {', '.join(keys[:15])}" + (" …" if len(keys) > 15 else "")
        ]
        counts = [f"{k} has {_count(v):,} items" for k, v in value.items() if isinstance(v, list)]
        return "; ".join(parts + counts[:6])
    if isinstance(value, list):
        return f"a JSON array of {_count(value):,} items"
    return f"a JSON {type(value).__name__}"


def _content_facts(result: str) -> str:
    """What a tool result holds, compressed or not, in one sentence."""
    first, _, body = result.partition("\n")
    if m := _COMPRESSED.match(first):
        rid, tokens, method, facts = m.groups()
        what = facts
        if method == "json":
            value = _json_value(body) or _json_value(body.partition("\n\n")[2])
            if value is not None:
                what = describe_json(value)
        elif method == "log":
            problems = [ln for ln in body.splitlines() if _LEVEL_WORD.search(ln)]
            errors = [ln for ln in problems if "WARN" not in ln.upper()] or problems
            if errors:
                what += f"; the latest problem line: {errors[-1][:160]}"
        return (
            f"{what} (compressed from {tokens} tokens as {rid}; "
            f'say "expand {rid}" to see the original)'
        )
    if m := _SUMMARISED.match(first):
        rid, tokens, model = m.groups()
        return (
            f"{_first_line(body)} (summarised by {model} from {tokens} tokens as {rid}; "
            f'say "expand {rid}" to see the original)'
        )
    value = _json_value(result)
    if value is not None:
        return describe_json(value)
    lines = len(result.splitlines())
    return f"{_first_line(result)} ({lines} line{'' if lines == 1 else 's'} seen)"


def _describe(call: PlannedCall, result: str, is_error: bool, request: str) -> str:
    if is_error:
        what = next(
            (call.input[k] for k in ("path", "pattern", "command", "url") if call.input.get(k)),
            call.name,
        )
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
        return f"{call.input.get('path')}: {_content_facts(result)}."
    if call.name == "fetch_url":
        status = result.split("\n", 1)[0]
        _, _, body = result.partition("\n\n")
        return f"{call.input.get('url')}: {status}; {_content_facts(body or result)}."
    if call.name == "run_command":
        status = result.split("\n", 1)[0]
        out = result.split("--- stdout ---\n", 1)[-1]
        return f"`{call.input.get('command')}`: {status}; {_content_facts(out)}."
    if call.name == "search_files" and (m := _COMPRESSED.match(result)):
        return f"Search for {call.input.get('pattern')!r}: {_content_facts(result)}."
    if call.name == "search_files":
        matches = [ln for ln in result.splitlines() if re.match(r"^\S+:\d+:", ln)]
        hit_files = {ln.split(":", 1)[0] for ln in matches}
        head = result.strip().splitlines()[0] if result.strip() else ""
        if not matches and "match" in head.lower():
            return f"Search for {call.input.get('pattern')!r}: {head}"
        return f"Search for {call.input.get('pattern')!r}: {len(matches)} matching lines in {len(hit_files)} files."
    if call.name == "expand_result":
        if m := _EXPANDED.match(result):
            rid, first, last, total = m.groups()
            body = result.partition("\n")[2]
            return (
                f"Expanded {rid}, lines {first}-{last} of {total}: "
                f"{_first_line(body)} … {_last_line(body)}"
            )
        return f"Expanded {call.input.get('result_id')}: {_first_line(result)}"
    return f"{call.name}: {_first_line(result)}"


def _last_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()[:120]
    return "(empty)"


def _system_text(request_body: dict[str, Any]) -> str:
    system = request_body.get("system") or ""
    if isinstance(system, list):
        return " ".join(b.get("text", "") for b in system if isinstance(b, dict))
    return str(system)


def summarize(text: str) -> str:
    """A summary of one tool result: its shape, size, and the facts that stand out."""
    _, _, result = text.partition("\n\n")
    result = result or text
    lines = [ln for ln in result.splitlines() if ln.strip()]
    parts = [f"{len(result.splitlines()):,} lines, {len(result):,} characters."]
    value = _json_value(result)
    if value is not None:
        parts.append(f"It is {describe_json(value)}.")
    else:
        parts.append(f"It starts: {_first_line(result)}")
        levels: dict[str, int] = {}
        first_bad = ""
        for line in lines:
            if m := _LEVEL_WORD.search(line):
                name = m.group(1).replace("WARNING", "WARN")
                levels[name] = levels.get(name, 0) + 1
                first_bad = first_bad or line.strip()[:160]
        if levels:
            counts = ", ".join(f"{k} {v:,}" for k, v in sorted(levels.items()))
            parts.append(f"Problem lines: {counts}; the first: {first_bad}")
        if len(lines) > 1:
            parts.append(f"It ends: {_last_line(result)}")
    return " ".join(parts)


def judge(request: str) -> str:
    """A verdict line from the word overlap (Jaccard) of the two answers: deterministic,
    and it says it is simulated."""
    m = _JUDGED.search(request)
    if m is None:
        return "worse: simulated judge found no <original> and <replay> answers to compare"
    a, b = ({w.lower() for w in _WORD.findall(part)} for part in m.groups())
    overlap = len(a & b) / len(a | b) if a | b else 1.0
    verdict = "same" if overlap >= 0.9 else "acceptable" if overlap >= 0.6 else "worse"
    return f"{verdict}: {overlap:.0%} word overlap between the answers (simulated judge)"


def reply(request_body: dict[str, Any]) -> Reply:
    """The next turn for this request: a tool call it still needs, or the answer."""
    messages = request_body.get("messages") or []
    if JUDGE_MARKER in _system_text(request_body):
        request, _ = current_task(messages)
        return Reply(text=judge(request))
    if SUMMARIZE_MARKER in _system_text(request_body):
        request, _ = current_task(messages)
        return Reply(text=summarize(request))
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
    if call.name == "expand_result":
        return f"Let me expand {call.input.get('result_id')}."
    if call.name == "run_command":
        return f"Let me run `{call.input.get('command')}`."
    if call.name == "fetch_url":
        return f"Let me fetch {call.input.get('url')}."
    return f"Let me call {call.name}."
