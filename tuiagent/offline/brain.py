"""What the offline model says: deterministic, from the request alone.

It picks tools from what the user asked, one call per turn, in the order the request names
them: "list / files / largest" lists the workspace, each workspace file named is read,
"search / find / grep X" searches, "expand rN [lines A-B]" pages in a compressed result,
"run `CMD`" runs a command and a URL is fetched (when those tools are offered). Then it answers
from the tool results. A request it cannot map to a tool gets a plain answer (a greeting
for a greeting) that says what it can do: never a refusal, which the router would redo.

It keeps the request's rules as the API does: `tool_choice` `none` forbids a tool call, `any`
and `tool` force one (with no text before it, the tool's input built from its schema when
the request did not ask for that tool), and `output_config.format` makes the answer JSON
valid for the schema, built deterministically from it (`schema_value`).

"What did FILE say about X?" is answered from what the conversation holds: the file's result
if it is still in context, else through expand_result when only its `rN` id is left (a
result cleared from context, or named in a compaction's summary), else by reading the file.
A compaction request (tuiagent.agent.context) is answered with a summary that keeps every
result line `[rN: ...]` and the latest requests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from tuiagent.llm.markers import CHECK_MARKER, COMPACT_MARKER, SUMMARIZE_MARKER, SUMMARY_MARKER
from tuiagent.offline import tool_search
from tuiagent.offline.tools import PlannedCall, bind, native, workspace_of

OFFLINE_NOTICE = "OFFLINE - simulated model"

_LIST_WORDS = re.compile(
    r"\b(list|files|largest|biggest|smallest|directory|folder|workspace|ls)\b", re.IGNORECASE
)
# A name's bytes that are not UTF-8 are spelt `\xNN`, as list_dir shows them (`caf\xe9.txt`).
_NAME_PART = r"(?:[\w-]|\\x[0-9A-Fa-f]{2})+"
_FILE_NAME = re.compile(
    rf"(?<![\w/.\\-])((?:{_NAME_PART}/)*{_NAME_PART}\.[A-Za-z0-9]{{1,8}})(?![\w/-])"
)
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
# "in parallel", "use sub-agents to ...": hand each file to a sub-agent (the delegate tool).
_DELEGATE_WORDS = re.compile(r"\b(in parallel|sub-?agents?|delegate|workers)\b", re.IGNORECASE)
# A sub-agent's system prompt (tuiagent.agent.delegate.WORKER_NOTE starts with it).
WORKER_MARKER = "[tuiagent:worker]"
# A sub-agent's note on its own compressed result: its rN is not the parent's to expand.
_SUB_RECALL = re.compile(
    r"\s*\((?:compressed|summarised) [^()]*? as r\d+; say \"expand r\d+\" to see the original\)"
)
# A sub-agent's part of a delegate result (tuiagent.agent.delegate.SubResult.header).
_DELEGATED = re.compile(r"^\[(a\d+) (\w+)(?: \(([^)]*)\))?(?:, [^\]]*)?\] (.*)$")
_RUN = re.compile(r"\b(?:run|execute)\s+`([^`]+)`", re.IGNORECASE)
_URL = re.compile(r"\bhttps?://[^\s\"'<>`]+[^\s\"'<>`.,;:!?)]")
_RECALL = re.compile(r"\bwhat did\s+(\S+?)\s+say about\s+(.+?)[\s?.!]*$", re.IGNORECASE)
_KEPT = re.compile(r"(?:^|\[)(r\d+): read_file (\S+)", re.MULTILINE)
_HEADER = re.compile(r"^\[(r\d+): (\S+)(?: (\S+))? result\b")
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
# "replace X with Y in FILE" (X and Y quoted, or single words); "write FILE: TEXT".
_QUOTED = r'"([^"]*)"|\'([^\']*)\'|(\S+)'
_REPLACE = re.compile(
    rf"\breplace\s+(?:{_QUOTED})\s+with\s+(?:{_QUOTED})\s+in\s+([\w./-]+\w)", re.IGNORECASE
)
_WRITE = re.compile(r"\bwrite\s+([\w./-]+\.\w+)\s*:\s?(.*)", re.IGNORECASE | re.DOTALL)
# "use TOOL {json}" / "call TOOL with {json}": a tool named with its input, whatever it is.
_USE_TOOL = re.compile(r"\b(?:use|call)\s+([A-Za-z0-9_-]+)(?:\s+with)?\s+(\{[^{}]*\})")
LISTING_LINE = re.compile(r"^(file|dir|link)\s+([\d,]+|-)\s+(?:bytes\s+)?(.+)$")


@dataclass
class Reply:
    """The model's turn: optional text, then at most one tool call, or several side by
    side (`also`: the coding agent's sub-agents, started at once)."""

    text: str
    tool_call: PlannedCall | None = None
    also: tuple[PlannedCall, ...] = ()


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


# What a client's harness adds to a user turn (the coding agent's reminders): not asked.
_REMINDER = re.compile(r"<system-reminder>.*?(?:</system-reminder>|$)", re.DOTALL)


def _asked(block: dict[str, Any]) -> str:
    """What a text block of a user turn asks, without the harness's reminders."""
    return (
        _REMINDER.sub("", str(block.get("text", ""))).strip() if block.get("type") == "text" else ""
    )


def _is_request(message: dict[str, Any]) -> bool:
    """A user message with text that is not a compaction's summary nor only reminders."""
    return message.get("role") == "user" and any(
        (text := _asked(b)) and not text.startswith(SUMMARY_MARKER) for b in _blocks(message)
    )


def current_task(messages: list[dict[str, Any]]) -> tuple[str, list[tuple[PlannedCall, str, bool]]]:
    """The latest user request and the tool calls made for it since, with their results."""
    start = 0
    for i, m in enumerate(messages):
        if _is_request(m):
            start = i
    request = " ".join(filter(None, map(_asked, _blocks(messages[start])))) if messages else ""
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
    if "edit_file" in tool_names:
        for m in _REPLACE.finditer(request):
            old = next(g for g in (m.group(1), m.group(2), m.group(3)) if g is not None)
            new = next(g for g in (m.group(4), m.group(5), m.group(6)) if g is not None)
            edit = {"path": m.group(7), "old_string": old, "new_string": new}
            found.append((m.start(), PlannedCall("edit_file", edit)))
    if "write_file" in tool_names and (m := _WRITE.search(request)):
        found.append(
            (m.start(), PlannedCall("write_file", {"path": m.group(1), "content": m.group(2)}))
        )
    for m in _USE_TOOL.finditer(request):  # any offered tool named with its input (MCP's)
        arguments = _json_value(m.group(2))
        if m.group(1) in tool_names and isinstance(arguments, dict):
            found.append((m.start(), PlannedCall(m.group(1), arguments)))
    found.sort(key=lambda pair: pair[0])
    plan: list[PlannedCall] = []
    for _, call in found:
        if call not in plan:
            plan.append(call)
    return plan


def delegated(plan: list[PlannedCall], known_files: set[str], request: str) -> list[PlannedCall]:
    """The plan with its file reads handed to sub-agents: one delegate call, a task per file
    (every listed file when the request names none)."""
    paths = [str(c.input.get("path")) for c in plan if c.name == "read_file"]
    rest = [c for c in plan if c.name != "read_file"]
    if not paths and any(c.name == "list_dir" for c in plan):
        paths = sorted(known_files)
    if not paths:
        return plan
    verb = "Summarize" if re.search(r"\bsummar", request, re.IGNORECASE) else "Read"
    tasks = [f"{verb} {path}" for path in paths]  # texts: no tier or cap asked for
    first = next((i for i, c in enumerate(plan) if c.name == "read_file"), len(rest))
    return [*rest[:first], PlannedCall("delegate", {"tasks": tasks}), *rest[first:]]


def _describe_delegated(result: str) -> str:
    """The sub-agents' answers, combined as the answer would say them had it read the files
    itself: what each found, and which did not finish and why (by agent and task); a
    Markdown list, so the app shows a line each."""
    lines: list[str] = []
    for part in result.split("\n\n")[1:]:
        head, _, body = part.partition("\n")
        m = _DELEGATED.match(head)
        if not m:
            continue
        agent, state, reason, task = m.groups()
        if state == "completed":
            said = [_SUB_RECALL.sub("", ln.strip()) for ln in body.splitlines() if ln.strip()]
            lines.extend(f"- {ln}" for ln in said or [f"{task}: (no answer)"])
        else:
            had = _SUB_RECALL.sub("", _first_line(body)) if body.strip() else "(no answer)"
            why = f" ({reason})" if reason else ""
            lines.append(f"- {agent} ({task}) {state}{why}: {had}")
    return "\n".join(lines) if lines else f"delegate: {result.split(chr(10), 1)[0]}"


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
        part, cut, facts = facts.rpartition("; of that part: ")  # a read stopped short
        what = facts
        if method == "json":
            value = _json_value(body) or _json_value(body.partition("\n\n")[2])
            if value is not None:
                what = describe_json(value)
        if cut:
            what = f"{part}; of that part: {what}"
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
        files = [(n, s) for k, n, s in rows if k == "file"]
        sized = [(n, s) for n, s in files if s is not None]
        dirs = [n for k, n, _ in rows if k == "dir"]
        parts = [
            f"The workspace has {_plural(len(files), 'file')} and {_plural(len(dirs), 'folder')}."
        ]
        if sized and re.search(r"\b(largest|biggest)\b", request, re.IGNORECASE):
            name, size = max(sized, key=lambda f: (f[1], f[0]))
            parts.append(f"The largest file is {name} ({size:,} bytes).")
        elif sized and re.search(r"\bsmallest\b", request, re.IGNORECASE):
            name, size = min(sized, key=lambda f: (f[1], f[0]))
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
    if call.name == "delegate":
        return _describe_delegated(result)
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
        return (
            f"Search for {call.input.get('pattern')!r}: {_plural(len(matches), 'matching line')} "
            f"in {_plural(len(hit_files), 'file')}."
        )
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


_CHECKED = re.compile(
    r"<criterion>\n?(.*?)\n?</criterion>\s*<answer>\n?(.*?)\n?</answer>", re.DOTALL
)


def check(request: str) -> str:
    """An eval's judge check: pass when the answer holds at least half of the criterion's
    words of three letters or more; deterministic, and it says it is simulated."""
    m = _CHECKED.search(request)
    if m is None:
        return "fail: simulated judge found no <criterion> and <answer> to compare"
    wanted = {w.lower() for w in _WORD.findall(m.group(1)) if len(w) >= 3}
    said = {w.lower() for w in _WORD.findall(m.group(2))}
    share = len(wanted & said) / len(wanted) if wanted else 1.0
    verdict = "pass" if share >= 0.5 else "fail"
    return f"{verdict}: the answer holds {share:.0%} of the criterion's words (simulated judge)"


def compact_summary(transcript: str) -> str:
    """A compaction's summary: every result line kept (the ids bring results back), then
    the latest requests."""
    kept: list[str] = []
    requests: list[str] = []
    for line in transcript.splitlines():
        line = line.strip()
        if line.startswith("Result: ["):
            line = line.removeprefix("Result: ")
        if m := _HEADER.match(line):
            line = " ".join(filter(None, (f"{m.group(1)}:", m.group(2), m.group(3))))
        if re.match(r"r\d+: ", line):
            if line not in kept:
                kept.append(line)
        elif line.startswith("User: "):
            requests.append(line.removeprefix("User: ")[:160])
        elif line.startswith("- asked: "):
            requests.append(line.removeprefix("- asked: "))
    parts = [f"{len(requests)} requests so far; results kept for expand_result:"]
    parts += kept or ["(none)"]
    parts += [f"- asked: {r}" for r in requests[-10:]]
    return "\n".join(parts)


def _all_text(messages: list[dict[str, Any]]) -> str:
    out = []
    for m in messages:
        for b in _blocks(m):
            out.append(b.get("text", "") if b.get("type") == "text" else _result_text(b))
    return "\n".join(out)


def _lines_about(text: str, topic: str) -> list[str]:
    words = [w for w in re.findall(r"\w+", topic.lower()) if len(w) > 2] or [topic.lower()]
    return [ln.strip() for ln in text.splitlines() if all(w in ln.lower() for w in words)]


def _file_results(messages: list[dict[str, Any]], path: str) -> list[str]:
    """What read_file of `path` returned, as it is in context now, latest last."""
    uses = {}
    out = []
    for m in messages:
        for b in _blocks(m):
            if b.get("type") == "tool_use" and b.get("name") == "read_file":
                uses[b.get("id", "")] = (b.get("input") or {}).get("path")
            elif b.get("type") == "tool_result" and uses.get(b.get("tool_use_id", "")) == path:
                out.append(_result_text(b))
    return out


def _recall(
    messages: list[dict[str, Any]], done: list[tuple[PlannedCall, str, bool]], path: str, topic: str
) -> Reply | None:
    """Answer "what did FILE say about X" from context or recall; None: read the file."""
    for call, result, is_error in reversed(done):  # what this request fetched
        if not is_error and call.name in ("read_file", "expand_result"):
            found = _lines_about(
                result.partition("\n")[2] if result.startswith("[") else result, topic
            )
            return Reply(text=_said(path, topic, found))
    for result in reversed(_file_results(messages, path)):  # still in context
        if not result.startswith("["):
            return Reply(text=_said(path, topic, _lines_about(result, topic)))
    for m in reversed(list(_KEPT.finditer(_all_text(messages)))):  # only its id is left
        if m.group(2) == path:
            call = PlannedCall("expand_result", {"result_id": m.group(1)})
            return Reply(text=_lead_in(call), tool_call=call)
    return None


def _said(path: str, topic: str, found: list[str]) -> str:
    if not found:
        return f"{path} said nothing about {topic}."
    return f"{path} said about {topic}: " + " / ".join(found[:3])


# The tools the offline model plans in (bound to the offered ones before each call), beside
# the offered tools themselves (edit_file, write_file, an MCP server's).
_NATIVE_TOOLS = {
    "list_dir",
    "read_file",
    "search_files",
    "expand_result",
    "run_command",
    "fetch_url",
}

_GREETING = re.compile(
    r"\b(hi|hello|hey|howdy|greetings|good\s+(?:morning|afternoon|evening))\b", re.I
)


def _plain_answer(request: str) -> str:
    what = (
        "tuiagent's offline simulated model, not Claude. I answer from this workspace: ask me "
        "to list its files, read a file by name, or search for a word. Set ANTHROPIC_API_KEY "
        "to talk to Claude."
    )
    if _GREETING.search(request):
        return f"Hello! I'm {what}"
    return f"This is {what}"


def _agent_reply(request_body: dict[str, Any], tools: dict[str, dict[str, Any]]) -> Reply:
    messages = request_body.get("messages") or []
    if JUDGE_MARKER in _system_text(request_body):
        request, _ = current_task(messages)
        return Reply(text=judge(request))
    if CHECK_MARKER in _system_text(request_body):
        request, _ = current_task(messages)
        return Reply(text=check(request))
    if SUMMARIZE_MARKER in _system_text(request_body):
        request, _ = current_task(messages)
        return Reply(text=summarize(request))
    if COMPACT_MARKER in _system_text(request_body):
        return Reply(text=compact_summary(_all_text(messages)))
    request, made_calls = current_task(messages)
    workspace = workspace_of([_system_text(request_body), request])
    # Calls of another agent's tools, read as the tuiagent tool that does the same.
    done = [(*native(c, r, workspace), e) for c, r, e in made_calls]
    if (asked := _RECALL.search(request)) is not None:
        recalled = _recall(messages, done, asked.group(1), asked.group(2))
        if recalled is not None:
            return recalled
    known_files: set[str] = set()
    for call, result, is_error in done:
        if call.name == "list_dir" and not is_error:
            known_files.update(n for k, n, _ in parse_listing(result) if k == "file")
    plan = plan_calls(request, _NATIVE_TOOLS | set(tools), known_files)
    if "delegate" in tools and _DELEGATE_WORDS.search(request):
        plan = delegated(plan, known_files, request)
    elif (agent := _agent_tool(tools)) and _DELEGATE_WORDS.search(request):
        return _sub_agents(agent, tools[agent], plan, made_calls)
    made = [c for c, _, _ in made_calls]
    for planned in plan:
        bound = bind(planned, tools, workspace)
        if bound is not None and bound not in made:
            return Reply(text=_lead_in(planned), tool_call=bound)
    if not done:
        return Reply(text=_plain_answer(request))
    answer = "\n".join(_describe(c, r, e, request) for c, r, e in done)
    if WORKER_MARKER in _system_text(request_body):
        answer = _SUB_RECALL.sub("", answer)  # its result ids are no use to the parent
    return Reply(text=answer)


# Another agent's tool that starts a sub-agent (the coding agent's `Agent`, once `Task`).
_AGENT_TOOLS = {"agent", "task"}
# What the coding agent adds after a sub-agent's answer (its id and usage): not its words.
_AGENT_RESULT_END = re.compile(r"agentId: |<usage>")


def _agent_tool(tools: dict[str, dict[str, Any]]) -> str | None:
    """The offered tool that starts a sub-agent with a prompt, if any."""
    for name, tool in tools.items():
        props = (tool.get("input_schema") or {}).get("properties") or {}
        if name.lower() in _AGENT_TOOLS and {"prompt", "description"} <= set(props):
            return name
    return None


def _task(call: PlannedCall) -> tuple[str, str] | None:
    """A planned call as a sub-agent's task: its short description and its prompt (words
    the model maps to the same call in the sub-agent's own request)."""
    args = call.input
    if call.name == "list_dir":
        return "List the files", "List the files in the workspace."
    if call.name == "read_file":
        return f"Read {args.get('path')}", f"Read {args.get('path')} and say what it holds."
    if call.name == "search_files":
        return f"Search {args.get('pattern')}", f'Search for "{args.get("pattern")}".'
    if call.name == "run_command":
        return "Run a command", f"Run `{args.get('command')}` and say what it printed."
    if call.name == "fetch_url":
        return "Fetch a page", f"Fetch {args.get('url')} and say what it says."
    return None


def _sub_agents(
    tool: str,
    offered: dict[str, Any],
    plan: list[PlannedCall],
    made: list[tuple[PlannedCall, str, bool]],
) -> Reply:
    """Asked for sub-agents, with the client's tool for them: a sub-agent per step of the
    plan, all started at once (as a model starts parallel work: one answer, several
    calls); once they have answered, what each found."""
    spawned = [(c, r, e) for c, r, e in made if c.name == tool]
    if spawned:
        lines = []
        for call, result, is_error in spawned:
            said = _AGENT_RESULT_END.split(result, maxsplit=1)[0].strip()
            state = "failed: " if is_error else ""
            lines.append(f"- {call.input.get('description')}: {state}{_first_line(said)}")
        return Reply(text="The sub-agents found:\n" + "\n".join(lines))
    props = (offered.get("input_schema") or {}).get("properties") or {}
    calls = []
    for step in plan:
        task = _task(step)
        if task is None:
            continue
        args = {"description": task[0], "prompt": task[1]}
        if "subagent_type" in props:
            args["subagent_type"] = "general-purpose"
        calls.append(PlannedCall(tool, args))
    if not calls:
        return Reply(text=_plain_answer(""))
    lead = f"I'll start {_plural(len(calls), 'sub-agent')} side by side."
    return Reply(text=lead, tool_call=calls[0], also=tuple(calls[1:]))


def output_schema(request_body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema the answer must follow (`output_config.format`, or the older beta
    `output_format`), if the request sets one."""
    fmt = (request_body.get("output_config") or {}).get("format") or request_body.get(
        "output_format"
    )
    if isinstance(fmt, dict) and isinstance(fmt.get("schema"), dict):
        return dict(fmt["schema"])
    return None


def reply(request_body: dict[str, Any]) -> Reply:
    """The next turn for this request: a tool call it still needs, or the answer."""
    # The tools it can call: the search tool is the API's (its own blocks, tool_search.py);
    # a deferred tool it has not seen is found through the search, or not at all.
    tools = [
        t
        for t in request_body.get("tools") or []
        if isinstance(t, dict) and str(t.get("type", "")) not in tool_search.SEARCH_TOOLS
    ]
    if tool_search.search_tool(request_body) is None:
        hidden = tool_search.unseen(request_body)
        tools = [t for t in tools if t.get("name") not in hidden]
    choice = request_body.get("tool_choice") or {}
    kind = choice.get("type", "auto")
    offered = {} if kind == "none" else {str(t.get("name", "")): t for t in tools}
    turn = _agent_reply(request_body, offered)
    if kind in ("any", "tool"):
        # The API prefills a forced call: no text before it.
        wanted = choice.get("name") if kind == "tool" else None
        if turn.tool_call is not None and wanted in (None, turn.tool_call.name):
            return Reply("", turn.tool_call)
        tool = next((t for t in tools if t.get("name") == wanted), tools[0])
        schema = tool.get("input_schema") or {"type": "object"}
        value = schema_value(schema, text=turn.text)
        return Reply(
            "", PlannedCall(str(tool.get("name")), value if isinstance(value, dict) else {})
        )
    schema = output_schema(request_body)
    if schema is not None and turn.tool_call is None:
        return Reply(json.dumps(schema_value(schema, text=turn.text)))
    return turn


def thinking_block(request_body: dict[str, Any], turn: Reply) -> dict[str, Any] | None:
    """The thinking block the request asks for (`thinking` enabled or adaptive), with a
    signature as the API sends one (opaque, base64); `display: omitted` sends it empty."""
    config = request_body.get("thinking")
    if not isinstance(config, dict) or config.get("type") not in ("enabled", "adaptive"):
        return None
    request, done = current_task(request_body.get("messages") or [])
    if turn.tool_call is not None:
        plan = f"I need {turn.tool_call.name} first."
    elif done:
        plan = "I have what the tools returned, so I can answer from it."
    else:
        plan = "I can answer this directly."
    text = f"The user asks: {request.strip()[:200]!r}. {plan}"
    digest = hashlib.sha256(b"tuiagent-offline-thinking\0" + text.encode()).digest()
    signature = base64.b64encode(b"\x12\x08offline" + digest * 8).decode()
    shown = "" if config.get("display") == "omitted" else text
    return {"type": "thinking", "thinking": shown, "signature": signature}


_FORMAT_EXAMPLES = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "hostname": "example.com",
}


def schema_value(schema: Any, *, text: str = "", _root: Any = None, _name: str = "") -> Any:
    """A value valid for a JSON schema, the same every time: every property (required or
    not) with a value of its type, the first enum value or the const, nested objects and
    arrays (minItems of them, at least one), `$ref`s into `$defs`, the first non-null
    branch of `anyOf`/`oneOf`, numbers within their bounds. The first free string carries
    `text` (the model's answer), others their property's name."""
    root = schema if _root is None else _root
    if not isinstance(schema, dict):
        return None
    if "$ref" in schema:
        ref = str(schema["$ref"])
        target: Any = root
        for part in ref.removeprefix("#/").split("/") if ref != "#" else []:
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return schema_value(target, text=text, _root=root, _name=_name)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            options = [o for o in schema[key] if isinstance(o, dict) and o.get("type") != "null"]
            if not options:
                return None
            return schema_value(options[0], text=text, _root=root, _name=_name)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            if isinstance(part, dict):
                merged = {**merged, **part}
        return schema_value(merged, text=text, _root=root, _name=_name)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        result: dict[str, Any] = {}
        for name, sub in (schema.get("properties") or {}).items():
            result[name] = schema_value(sub, text=text, _root=root, _name=name)
            if text and _uses_text(sub, root):
                text = ""
        return result
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        items = schema.get("items") or {}
        return [schema_value(items, text=text, _root=root, _name=_name) for _ in range(count)]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        value = 0 if low is None else low + (1 if "exclusiveMinimum" in schema else 0)
        if high is not None and value > high:
            value = high
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if schema.get("format") in _FORMAT_EXAMPLES:
        return _FORMAT_EXAMPLES[schema["format"]]
    value = text or _name or "text"
    low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
    value = value.ljust(low, ".")
    return value[: int(high)] if high is not None else value


def _uses_text(schema: Any, root: Any) -> bool:
    """Whether schema_value put the text in this (a free string)."""
    return bool(schema_value(schema, text="\0", _root=root) == "\0")


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
    if call.name == "delegate":
        return f"Let me hand these to {len(call.input.get('tasks') or [])} sub-agents."
    return f"Let me call {call.name}."


def _plural(n: int, noun: str) -> str:
    """`1 file`, `2 files`."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
