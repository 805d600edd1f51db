"""Tool-result compression with recall.

A tool result over `over_tokens` is shrunk before it enters the context, by a method chosen
from its shape, and comes out at or under that size:

- json: the structure (key names, value types, array lengths, the first items, numeric
  ranges of the rest); the body is itself valid JSON.
- search: matches grouped by file, a few per file, with totals.
- log: repeated and near-identical lines (same text but for numbers, ids, times) collapsed
  into one line with a count and line range; error lines kept first.
- code / text: head and tail, with a marker naming the cut line range and its size (code
  also lists the definitions inside the cut).

The first line of a compressed result is a note saying what was dropped and how to get it
back: the original stays in the session under a result id (`r1`, `r2`, ...) and the
`expand_result` tool returns exact slices of it, bounded by the same token limit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tuiagent.agent.tools.base import Tool, ToolError
from tuiagent.llm.markers import SUMMARIZE_MARKER
from tuiagent.llm.tokens import estimate_tokens

EXPAND_TOOL = "expand_result"
_RESULT_NUMBER = re.compile(r"r([1-9][0-9]{0,8})")
_NAMED_ID = re.compile(r"\[(r[1-9][0-9]{0,8})[: ]")
DEFAULT_EXPAND_LINES = 200
# A line of a note or marker never shows more than this much of one original line.
_MAX_LINE_CHARS = 240

SUMMARIZE_SYSTEM = (
    f"{SUMMARIZE_MARKER} You summarise one tool result for another model that cannot see it. "
    "Keep every fact a reader would need: names, counts, numbers, errors, structure. "
    "Plain text, no preamble, as short as the facts allow."
)


@dataclass(frozen=True)
class Compressed:
    """A tool result as the model sees it, and what it was before."""

    text: str
    method: str  # none | json | search | log | code | text | summary
    original_tokens: int
    compressed_tokens: int
    result_id: str | None = None


@dataclass
class _Kept:
    lines: list[str]
    how: str  # "" or why the kept form differs in layout from the tool's output


class Compressor:
    """Shrinks large tool results and keeps their originals for `expand_result`.

    Each original kept is handed to `on_keep` (the run's transcript writes it), so a resumed
    run gets them back (`restore`) under the same ids; a new id never reuses an old one."""

    def __init__(
        self, over_tokens: int = 1000, on_keep: Callable[[str, str], None] | None = None
    ) -> None:
        self.over_tokens = over_tokens
        self.on_keep = on_keep
        self._kept: dict[str, _Kept] = {}
        self._next_id = 1  # the number of the next result id (`r{n}`)

    # --- compression -------------------------------------------------------

    def compress(self, tool: str, text: str) -> Compressed:
        tokens = estimate_tokens(text)
        if tokens <= self.over_tokens or tool == EXPAND_TOOL:
            return Compressed(text, "none", tokens, tokens)
        result_id, kept = self._keep(text)
        # A read stopped at its size limit is a part of the file: its shape and its counts
        # are the part's, and the note says so.
        body, part = split_partial(text)
        for method, shrink in _methods(body, self.over_tokens):
            out = self._fit(tool, result_id, kept, tokens, method, shrink, part)
            if out is not None:
                return out
        # A bound too small for any method's note: the note alone, cut to fit.
        note = f"[{result_id}: {tool} result of {tokens:,} tokens not shown; " + _how_to_expand(
            result_id, kept
        )
        cut = _cut_to(note + "]", self.over_tokens)
        return Compressed(cut, "text", tokens, estimate_tokens(cut), result_id)

    def summarized(self, tool: str, text: str, summary: str, model: str) -> Compressed:
        """A summary written by a model stands in for the result; the original is kept."""
        tokens = estimate_tokens(text)
        result_id, kept = self._keep(text)
        note = (
            f"[{result_id}: {tool} result of {tokens:,} tokens, summarised by {model}; "
            f"{_how_to_expand(result_id, kept)}]"
        )
        out = _cut_to(note + "\n" + summary.strip(), self.over_tokens)
        return Compressed(out, "summary", tokens, estimate_tokens(out), result_id)

    def keep(self, text: str) -> tuple[str, int]:
        """Keep a result whole for expand_result (one cleared from the context): its id and
        how many lines it has."""
        result_id, kept = self._keep(text)
        return result_id, len(kept.lines)

    def line_count(self, result_id: str) -> int | None:
        kept = self._kept.get(result_id)
        return None if kept is None else len(kept.lines)

    def restore(self, originals: Mapping[str, str], seen: Iterable[str] = ()) -> None:
        """Take back the originals an earlier run kept, under their ids (handed to `on_keep`
        again, so this run's files hold them too); new ids go on after every id kept or
        `seen` (named in the conversation, even when its original was not kept)."""
        for result_id, text in originals.items():
            if _RESULT_NUMBER.fullmatch(result_id):
                self._keep(text, result_id)
        for result_id in seen:
            self._count(result_id)

    def _count(self, result_id: str) -> None:
        m = _RESULT_NUMBER.fullmatch(result_id)
        if m:
            self._next_id = max(self._next_id, int(m.group(1)) + 1)

    def _keep(self, text: str, result_id: str | None = None) -> tuple[str, _Kept]:
        result_id = result_id or f"r{self._next_id}"
        self._count(result_id)
        kept = _Kept(text.splitlines(), "")
        if len(kept.lines) <= 3 and len(text) > 4 * _MAX_LINE_CHARS:
            # One long line (minified JSON) cannot be paged by lines: keep it laid out.
            value = _parse_json(text)
            if value is not _NOT_JSON:
                kept = _Kept(json.dumps(value, indent=1, ensure_ascii=False).splitlines(), "")
                kept.how = "kept pretty-printed from one-line JSON"
        self._kept[result_id] = kept
        if self.on_keep is not None:
            self.on_keep(result_id, text)
        return result_id, kept

    def _fit(
        self,
        tool: str,
        result_id: str,
        kept: _Kept,
        tokens: int,
        method: str,
        shrink: Callable[[int], tuple[str, str] | None],
        part: str = "",
    ) -> Compressed | None:
        for level in range(40):
            made = shrink(level)
            if made is None:
                return None
            facts, body = made
            if part:
                facts = f"{part}; of that part: {facts}"
            note = (
                f"[{result_id}: {tool} result compressed from {tokens:,} tokens ({method}). "
                f"{facts}. {_how_to_expand(result_id, kept)}]"
            )
            out = note + "\n" + body
            size = estimate_tokens(out)
            if size <= self.over_tokens:
                return Compressed(out, method, tokens, size, result_id)
        return None

    # --- recall ------------------------------------------------------------

    def expand(self, result_id: str, offset: int = 0, limit: int = DEFAULT_EXPAND_LINES) -> str:
        """Lines offset..offset+limit (0-based) of a kept original, exactly, within the bound."""
        kept = self._kept.get(result_id)
        if kept is None:
            m = _RESULT_NUMBER.fullmatch(result_id)
            if m and int(m.group(1)) < self._next_id:
                raise ToolError(
                    f"the original of {result_id} was not kept (the run it came from did not "
                    "keep originals); read the file or run the tool again"
                )
            known = ", ".join(self._kept) or "none yet"
            raise ToolError(f"no result {result_id!r}; results kept in this session: {known}")
        if offset < 0 or limit < 1:
            raise ToolError("offset must be >= 0 and limit >= 1")
        total = len(kept.lines)
        if offset >= total:
            raise ToolError(f"offset {offset} is past the end: {result_id} has {total} lines")
        wanted = kept.lines[offset : offset + limit]
        room = self.over_tokens - 40  # the header line
        shown = lines_within(wanted, room)
        end = offset + len(shown)
        if not shown:  # a single line longer than the bound: its start, said so
            first = _cut_to(wanted[0], room)
            return (
                f"[{result_id} line {offset} of {total} is {len(wanted[0]):,} characters, more "
                f"than the {self.over_tokens:,}-token limit; its first {len(first):,} shown]\n"
                + first
            )
        header = f"[{result_id} lines {offset}-{end - 1} of {total} (0-based)"
        if len(shown) < len(wanted):
            header += f"; stopped at the {self.over_tokens:,}-token limit, next offset={end}"
        elif end < total:
            header += f"; next offset={end}"
        if kept.how:
            header += f"; {kept.how}"
        return header + "]\n" + "\n".join(shown)

    def expand_tool(self) -> Tool:
        async def run(args: dict[str, Any]) -> str:
            result_id = args.get("result_id")
            if not isinstance(result_id, str) or not result_id:
                raise ToolError("result_id must be a result id such as 'r1'")
            offset = int(args.get("offset") or 0)
            limit = int(args.get("limit") or DEFAULT_EXPAND_LINES)
            return self.expand(result_id.strip(), offset, limit)

        return Tool(
            EXPAND_TOOL,
            "Page in the original of a compressed tool result: lines offset..offset+limit "
            "(0-based) of result_id (as named in the result's note, e.g. 'r1'), exactly, "
            f"up to {self.over_tokens:,} tokens per call.",
            {
                "type": "object",
                "properties": {
                    "result_id": {"type": "string"},
                    "offset": {"type": "integer", "minimum": 0},
                    "limit": {"type": "integer", "minimum": 1},
                },
                "required": ["result_id"],
            },
            run,
        )


def result_ids_in(messages: list[dict[str, Any]]) -> set[str]:
    """The result ids a conversation names (`[r7: ...`, `[r7 lines ...`)."""
    return set(_NAMED_ID.findall(json.dumps(messages, ensure_ascii=False)))


def summary_request(model: str, tool: str, text: str, max_tokens: int) -> dict[str, Any]:
    """The Messages request asking a (fast) model to summarise one tool result."""
    return {
        "model": model,
        "max_tokens": max_tokens,
        "system": SUMMARIZE_SYSTEM,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": f"Summarise this {tool} result in at most {max_tokens} "
                        f"tokens.\n\n{text}",
                    }
                ],
            }
        ],
    }


def _how_to_expand(result_id: str, kept: _Kept) -> str:
    return (
        f'expand_result(result_id="{result_id}", offset, limit) returns exact lines of the '
        f"original ({len(kept.lines):,} lines{', ' + kept.how if kept.how else ''})"
    )


def _cut_to(text: str, tokens: int) -> str:
    """The longest prefix of text within `tokens`, cut at a line or word if possible."""
    if estimate_tokens(text) <= tokens:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # binary search on characters: estimate_tokens grows with the prefix
        mid = (lo + hi + 1) // 2
        if estimate_tokens(text[:mid]) <= tokens - 1:
            lo = mid
        else:
            hi = mid - 1
    cut = text[:lo]
    for sep in ("\n", " "):
        at = cut.rfind(sep)
        if at > lo * 0.8:
            cut = cut[:at]
            break
    return cut + "…"


def _n(count: int, noun: str) -> str:
    """`1 line`, `2 lines`: a count with its noun."""
    return f"{count:,} {noun}{'s' * (count != 1)}"


def _clip(line: str, width: int) -> str:
    line = line.rstrip()
    return line if len(line) <= width else line[: width - 1] + "…"


# --- shape detection -----------------------------------------------------------


def lines_within(lines: Iterable[str], room: int) -> list[str]:
    """The leading lines that fit in `room` tokens (each line and its newline)."""
    kept: list[str] = []
    used = 0
    for line in lines:
        cost = estimate_tokens(line) + 1
        if used + cost > room:
            break
        kept.append(line)
        used += cost
    return kept


_NOT_JSON = object()

# The line read_file ends a read with when it stopped at its size limit (tools/workspace.py).
_STOPPED = re.compile(r"\n\[read stopped at ([\d,]+) bytes of ([\d,]+);[^\n]*\]\Z")


def split_partial(text: str) -> tuple[str, str]:
    """A read that stopped at its size limit: (the part read, what part it is); else
    (text, "")."""
    m = _STOPPED.search(text)
    if m is None:
        return text, ""
    body = text[: m.start()]
    lines = body.count("\n") + (not body.endswith("\n"))
    return body, (
        f"Only part of the file was read: its first {m.group(1)} bytes of {m.group(2)} "
        f"({_n(lines, 'line')})"
    )


def _parse_json(text: str) -> Any:
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        return _NOT_JSON
    try:
        return json.loads(stripped)
    except (json.JSONDecodeError, RecursionError):
        return _cut_json(stripped)


_CUT_TRIES = 64


def _cut_json(text: str) -> Any:
    """A JSON document cut short (a read stopped at its size limit) as the complete values
    it begins with: cut before the last comma outside a string, its open brackets closed.
    _NOT_JSON when that does not parse (it was not JSON)."""
    closers = {"{": "}", "[": "]"}
    stack: list[str] = []
    cuts: list[tuple[int, str]] = []  # (where a comma is, the brackets open there)
    in_string = escaped = False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in closers:
            stack.append(closers[ch])
        elif ch in "}]":
            if not stack or stack.pop() != ch:
                return _NOT_JSON
            if not stack:
                return _NOT_JSON  # complete, so not cut: json.loads refused it for a reason
        elif ch == "," and stack:
            cuts.append((i, "".join(reversed(stack))))
    for at, closing in reversed(cuts[-_CUT_TRIES:]):
        try:
            return json.loads(text[:at] + closing)
        except (json.JSONDecodeError, RecursionError):
            continue
    return _NOT_JSON


# path:line:text as search_files (and grep -n) print it; a timestamp is not a path.
_SEARCH_LINE = re.compile(r"^(?!\d{4}-\d\d-\d\d)([^\s:][^:]*):([1-9]\d*):(.*)$")
_SEARCH_HEAD = re.compile(r"^\d[\d,]* matches? for ")
_LEVEL = re.compile(
    r"\b(FATAL|CRITICAL|ERROR|WARN(?:ING)?|INFO|DEBUG|TRACE|NOTICE)\b", re.IGNORECASE
)
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d|\b\d\d:\d\d:\d\d\b|^\[?\d{9,}")
_SEVERE = re.compile(
    r"\b(fatal|critical|error|exception|traceback|panic|fail(?:ed|ure)?|warn(?:ing)?)\b",
    re.IGNORECASE,
)
_WARNING = re.compile(r"\bwarn(?:ing)?\b", re.IGNORECASE)
_ERRORISH = re.compile(r"\b(fatal|critical|error|exception|traceback|panic)\b", re.IGNORECASE)
# Numbers, hex ids, uuids, times: what varies between near-identical log lines.
_VOLATILE = re.compile(r"0x[0-9a-fA-F]+|\b[0-9a-fA-F]*\d[0-9a-fA-F]*\b|\d+")
_DEFINITION = re.compile(
    r"^\s*(?:export\s+|pub(?:\(\w+\))?\s+|async\s+|static\s+|public\s+|private\s+)*"
    r"(?:def|class|function|fn|func|interface|struct|enum|trait|impl|module|type)\s+\w"
)


def _methods(
    text: str, bound: int
) -> Iterator[tuple[str, Callable[[int], tuple[str, str] | None]]]:
    """The methods that fit this result's shape, best first; `text` always comes last."""
    preamble, value = _json_part(text)
    if value is not _NOT_JSON:
        yield "json", lambda level: _json_level(preamble, value, level)
    lines = text.splitlines()
    nonblank = [ln for ln in lines if ln.strip()]
    if nonblank:
        body = nonblank[1:] if _SEARCH_HEAD.match(nonblank[0]) else nonblank
        hits = sum(1 for ln in body if _SEARCH_LINE.match(ln))
        if body and hits >= 0.8 * len(body):
            yield "search", _search_method(lines, bound)
    if len(nonblank) >= 20:
        marked = sum(1 for ln in nonblank if _LEVEL.search(ln) or _TIMESTAMP.search(ln))
        shapes = len({_VOLATILE.sub("#", ln) for ln in nonblank})
        if marked >= 0.5 * len(nonblank) or shapes <= 0.3 * len(nonblank):
            yield "log", _log_method(lines)
    definitions = [i for i, ln in enumerate(lines) if _DEFINITION.match(ln)]
    if len(definitions) >= 3:
        yield "code", lambda level: _text_level(lines, level, definitions, bound)
    yield "text", lambda level: _text_level(lines, level, [], bound)


def _json_part(text: str) -> tuple[str, Any]:
    """The result as JSON, or after a short preamble that ends in a blank line (HTTP)."""
    value = _parse_json(text)
    if value is not _NOT_JSON:
        return "", value
    head, sep, rest = text.partition("\n\n")
    if sep and head.count("\n") < 12:
        value = _parse_json(rest)
        if value is not _NOT_JSON:
            return head + "\n\n", value
    return "", _NOT_JSON


# --- json ----------------------------------------------------------------------

# (items kept per array, characters per string, depth, keys per nested object)
_JSON_LEVELS = [
    (5, 200, 8, 40),
    (3, 120, 6, 25),
    (2, 80, 5, 15),
    (1, 60, 4, 10),
    (1, 40, 3, 6),
    (1, 24, 2, 4),
    (0, 24, 2, 4),
    (0, 16, 1, 2),
    (0, 16, 1, 0),
]


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if value is None:
        return "null"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "array"
    return "object"


def _number_range(values: list[Any]) -> str:
    nums = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if not nums:
        return ""
    return f" {min(nums):g}..{max(nums):g}"


def _array_schema(items: list[Any], max_fields: int) -> str:
    """What the items of an array hold: field names, types and ranges across all items."""
    if not items:
        return ""
    if all(isinstance(i, dict) for i in items):
        fields: dict[str, list[Any]] = {}
        for item in items:
            for key, value in item.items():
                fields.setdefault(key, []).append(value)
        parts = []
        for key, values in list(fields.items())[:max_fields]:
            types = "|".join(sorted({_type_name(v) for v in values}))
            part = f"{key} {types}{_number_range(values)}"
            if len(values) < len(items):
                part += f" (in {len(values)})"
            parts.append(part)
        more = len(fields) - len(parts)
        return "; item fields: " + ", ".join(parts) + (f", +{more} more" if more > 0 else "")
    types = "|".join(sorted({_type_name(v) for v in items}))
    return f"; items {types}{_number_range(items)}"


def _shrink_json(value: Any, level: tuple[int, int, int, int], depth: int, top: bool) -> Any:
    items, chars, max_depth, keys = level
    if isinstance(value, str):
        return value if len(value) <= chars else value[:chars] + f"…(+{len(value) - chars} chars)"
    if isinstance(value, dict):
        if depth >= max_depth and not top:
            return f"<object of {len(value)} keys>"
        names = list(value) if top else list(value)[:keys]
        out = {k: _shrink_json(value[k], level, depth + 1, False) for k in names}
        if len(names) < len(value):
            rest = list(value)[len(names) :]
            shown = ", ".join(rest[:8]) + (", …" if len(rest) > 8 else "")
            out["…"] = f"{len(rest)} more keys: {shown}"
        return out
    if isinstance(value, list):
        if depth >= max_depth and not top:
            return f"<array of {len(value)}{_array_schema(value, 4) if keys else ''}>"
        kept = [_shrink_json(v, level, depth + 1, False) for v in value[:items]]
        if len(value) > items:
            more = len(value) - items
            schema = _array_schema(value, keys) if keys else ""
            kept.append(f"… {more} more items ({len(value)} in all){schema}")
        return kept
    return value


def _json_facts(value: Any) -> str:
    if isinstance(value, dict):
        parts = []
        for key, v in list(value.items())[:20]:
            if isinstance(v, list):
                parts.append(f"{key} (array of {len(v)})")
            elif isinstance(v, dict):
                parts.append(f"{key} (object of {len(v)} keys)")
            else:
                parts.append(f"{key} ({_type_name(v)})")
        more = f", +{len(value) - 20} more" if len(value) > 20 else ""
        return f"JSON object with {len(value)} keys: " + ", ".join(parts) + more
    if isinstance(value, list):
        return f"JSON array of {len(value)} items"
    return f"JSON {_type_name(value)}"


def _json_level(preamble: str, value: Any, level: int) -> tuple[str, str] | None:
    if level < len(_JSON_LEVELS):
        shrunk = _shrink_json(value, _JSON_LEVELS[level], 0, True)
    elif isinstance(value, dict) and level - len(_JSON_LEVELS) < 12:
        # Top-level keys alone are too many: keep as many as fit, name how many are not.
        keep = max(1, len(value) >> (level - len(_JSON_LEVELS) + 1))
        shrunk = {k: _shrink_json(value[k], _JSON_LEVELS[-1], 1, False) for k in list(value)[:keep]}
        shrunk["…"] = f"{len(value) - keep} more top-level keys not shown"
    else:
        return None
    body = json.dumps(shrunk, ensure_ascii=False, separators=(",", ":"))
    return _json_facts(value) + "; values cut, arrays shortened, each says what it drops", (
        preamble + body
    )


# --- search --------------------------------------------------------------------

# (matches shown per file, characters per match, line numbers listed per file)
_SEARCH_LEVELS = [
    (5, 160, 12),
    (3, 120, 8),
    (2, 100, 5),
    (1, 80, 3),
    (1, 60, 0),
    (0, 0, 0),
]


def _search_method(lines: list[str], bound: int) -> Callable[[int], tuple[str, str] | None]:
    head = lines[0] if lines and _SEARCH_HEAD.match(lines[0]) else ""
    files: dict[str, list[tuple[str, str]]] = {}
    for line in lines:
        m = _SEARCH_LINE.match(line)
        if m:
            files.setdefault(m.group(1), []).append((m.group(2), m.group(3).strip()))
    total = sum(len(v) for v in files.values())
    room = bound * 3 // 4  # the rest is for the note and the tally of files not shown

    def blocks(detail: tuple[int, int, int]) -> Iterator[tuple[list[str], int]]:
        per_file, width, numbers = detail
        for path, matches in files.items():
            block = [f"{path}: {len(matches)} matches"]
            if numbers:
                listed = ", ".join(k for k, _ in matches[:numbers])
                block[0] += f" (lines {listed}{', …' if len(matches) > numbers else ''})"
            block.extend(f"  {k}: {_clip(t, width)}" for k, t in matches[:per_file])
            yield block, estimate_tokens("\n".join(block))

    # Breadth first: the most detail per file at which every file still fits.
    start = next(
        (
            i
            for i, detail in enumerate(_SEARCH_LEVELS)
            if sum(cost for _, cost in blocks(detail)) <= room
        ),
        len(_SEARCH_LEVELS) - 1,
    )

    def level(n: int) -> tuple[str, str] | None:
        if n >= len(_SEARCH_LEVELS) + 8:
            return None
        detail = _SEARCH_LEVELS[min(start + n, len(_SEARCH_LEVELS) - 1)]
        per_file = detail[0]
        budget = room * 7 // (7 + max(0, start + n - len(_SEARCH_LEVELS) + 1))
        out = [head] if head else []
        if per_file == 0 and n < len(_SEARCH_LEVELS):  # too many files for examples in each
            first = [(p, k, t) for p, ms in list(files.items())[:3] for k, t in ms[:1]]
            out.append("[first matches:]")
            out.extend(f"{p}:{k}: {_clip(t, 80)}" for p, k, t in first)
            out.append("[matches per file:]")
        used = estimate_tokens("\n".join(out))
        shown = 0
        for block, cost in blocks(detail):
            if used + cost > budget and shown:
                break
            out.extend(block)
            used += cost
            shown += 1
        if shown < len(files):
            rest = list(files.items())[shown:]
            count = sum(len(m) for _, m in rest)
            out.append(f"… {len(rest)} more files with {count} matches, not shown")
        facts = (
            f"{total:,} matches in {len(files):,} files; grouped by file, "
            f"{per_file} shown per file, {shown} files shown"
        )
        return facts, "\n".join(out)

    return level


# --- logs ----------------------------------------------------------------------

# (shapes shown, characters per line, error/warning lines shown verbatim, last lines shown)
_LOG_LEVELS = [
    (400, 240, 30, 10),
    (120, 200, 20, 8),
    (80, 160, 15, 6),
    (50, 140, 10, 5),
    (35, 120, 8, 4),
    (25, 100, 6, 3),
    (16, 90, 4, 2),
    (10, 80, 3, 1),
    (6, 70, 2, 1),
    (3, 60, 1, 1),
    (1, 60, 0, 1),
]


def _log_method(lines: list[str]) -> Callable[[int], tuple[str, str] | None]:
    groups: dict[str, list[int]] = {}  # shape -> [count, first, last]
    levels: dict[str, int] = {}
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        group = groups.setdefault(_VOLATILE.sub("#", line), [0, i, i])
        group[0] += 1
        group[2] = i
        if m := _LEVEL.search(line):
            name = m.group(1).upper().replace("WARNING", "WARN")
            levels[name] = levels.get(name, 0) + 1
    # Error-like shapes first, then the most frequent: what a reader of a log looks for.
    ranked = sorted(groups.values(), key=lambda g: (not _SEVERE.search(lines[g[1]]), -g[0], g[1]))
    severe = [i for i, ln in enumerate(lines) if _SEVERE.search(ln)]
    errors = [i for i in severe if not _WARNING.search(lines[i]) or _ERRORISH.search(lines[i])]
    warnings = [i for i in severe if i not in set(errors)]
    nonblank = [i for i, ln in enumerate(lines) if ln.strip()]
    by_level = ", ".join(f"{k} {v:,}" for k, v in sorted(levels.items(), key=lambda kv: -kv[1]))
    facts = f"Log of {_n(len(lines), 'line')} in {_n(len(groups), 'shape')}" + (
        f"; levels: {by_level}" if by_level else ""
    )

    def level(n: int) -> tuple[str, str] | None:
        if n >= len(_LOG_LEVELS):
            return None
        max_shapes, width, n_severe, n_last = _LOG_LEVELS[n]
        out = ["[each line shape once: COUNTx Lfirst-last, lines alike but for numbers and ids]"]
        for count, first, last in sorted(ranked[:max_shapes], key=lambda g: g[1]):
            example = _clip(lines[first], width)
            out.append(
                f"L{first + 1}: {example}"
                if count == 1
                else f"{count}x L{first + 1}-{last + 1}: {example}"
            )
        if len(ranked) > max_shapes:
            rest = ranked[max_shapes:]
            out.append(
                f"… {_n(len(rest), 'more line shape')} ({_n(sum(g[0] for g in rest), 'line')}) "
                "not shown"
            )
        # Verbatim: errors before warnings, the first and the latest of each, then the end.
        picked = _first_and_last(errors, n_severe)
        picked += _first_and_last(warnings, n_severe - len(picked))
        if picked:
            out.append(f"[{len(picked)} of {len(severe):,} error/warning lines, verbatim:]")
            out.extend(f"L{i + 1}: {_clip(lines[i], width)}" for i in sorted(picked))
        tail = nonblank[-n_last:]
        out.append(f"[last {len(tail)} lines:]")
        out.extend(f"L{i + 1}: {_clip(lines[i], width)}" for i in tail)
        return facts, "\n".join(out)

    return level


def _first_and_last(indices: list[int], n: int) -> list[int]:
    if n <= 0:
        return []
    if len(indices) <= n:
        return list(indices)
    return indices[: n // 3] + indices[len(indices) - (n - n // 3) :]


# --- text and code ------------------------------------------------------------

# Fraction of the bound the head and tail may take, shrinking at each level.
_TEXT_SHARE = [0.8 * 0.88**i for i in range(30)]


def _text_level(
    lines: list[str], level: int, definitions: list[int], bound: int
) -> tuple[str, str] | None:
    if level >= len(_TEXT_SHARE):
        return None
    # Head and tail start at a generous share of the bound and shrink level by level; the
    # caller checks the real size with the note.
    room = int(_TEXT_SHARE[level] * bound)
    head_room, tail_room = room * 2 // 3, room // 3
    head = lines_within(lines, head_room)
    tail = lines_within(reversed(lines[len(head) :]), tail_room)
    tail.reverse()
    first_cut, last_cut = len(head), len(lines) - len(tail)  # 0-based, [first, last)
    if first_cut >= last_cut:
        return f"{len(lines):,} lines, all shown", "\n".join(lines)
    if not head:  # one very long first line: show its start
        head = [_cut_to(lines[0], max(20, head_room))]
        first_cut = 1 if len(lines) > 1 else 0
    cut_chars = sum(len(ln) + 1 for ln in lines[first_cut:last_cut])
    marker = (
        f"[… lines {first_cut + 1:,}-{last_cut:,} cut: {last_cut - first_cut:,} lines, "
        f"{cut_chars:,} characters; expand_result offset={first_cut} pages them …]"
    )
    middle = [marker]
    inside = [i for i in definitions if first_cut <= i < last_cut]
    if inside:
        budget = max(0, 12 - level)
        middle.append(f"[the cut part defines ({len(inside)}):]")
        middle.extend(f"  L{i + 1}: {_clip(lines[i].strip(), 80)}" for i in inside[:budget])
        if len(inside) > budget:
            middle.append(f"  … {len(inside) - budget} more definitions")
    facts = (
        f"{len(lines):,} lines; shown lines 1-{first_cut:,} and {last_cut + 1:,}-{len(lines):,}, "
        f"lines {first_cut + 1:,}-{last_cut:,} cut ({last_cut - first_cut:,} lines)"
    )
    return facts, "\n".join([*head, *middle, *tail])
