"""Other agents' tools, as the offline model uses them.

The offline model plans in tuiagent's own tools (`list_dir`, `read_file`, `search_files`,
`run_command`, `fetch_url`). A client that offers other tools instead, as the leading coding
agent does (`Bash`, `Read`, `Grep`, `Glob`, `LS`, `WebFetch`), gets the same plan in its own
tools: `bind` turns a planned call into a call of an offered tool, and `native` turns such a
call and its result back, so that the answer is written the same way whichever tools ran.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PlannedCall:
    name: str
    input: dict[str, Any]


# `ls -lA` is in every POSIX shell's reach and says each entry's kind and size.
LIST_COMMAND = "ls -lA"
_LS_LINE = re.compile(r"^([-dlcbps])\S*\s+\d+\s+\S+\s+\S+\s+(\d+)\s+\S+\s+\S+\s+\S+\s+(.+)$")
_NUMBERED = re.compile(r"^\s*\d+(?:\t|→)", re.MULTILINE)  # `cat -n` style, as Read returns
_WORKSPACE = re.compile(r"(?:Primary working directory|Working directory|cwd):\s*(/\S*)")
_KINDS = {"-": "file", "d": "dir", "l": "link"}


def _properties(tool: dict[str, Any]) -> set[str]:
    schema = tool.get("input_schema")
    props = schema.get("properties") if isinstance(schema, dict) else None
    return set(props) if isinstance(props, dict) else set()


def _find(tools: dict[str, dict[str, Any]], names: set[str], needs: str) -> str | None:
    """The offered tool with one of these names (any case) that takes `needs`."""
    for name, tool in tools.items():
        if name.lower() in names and needs in _properties(tool):
            return name
    return None


def _shell(tools: dict[str, dict[str, Any]], command: str, what: str) -> PlannedCall | None:
    name = _find(tools, {"bash", "shell"}, "command")
    if name is None:
        return None
    args: dict[str, Any] = {"command": command}
    if "description" in _properties(tools[name]):
        args["description"] = what
    return PlannedCall(name, args)


def workspace_of(texts: list[str]) -> str | None:
    """The client's working directory, where its system prompt says it."""
    for text in texts:
        if m := _WORKSPACE.search(text):
            return m.group(1)
    return None


def bind(
    call: PlannedCall, tools: dict[str, dict[str, Any]], workspace: str | None
) -> PlannedCall | None:
    """The planned call in the offered tools: itself when offered, else the matching tool
    of another agent, else None (the step is skipped)."""
    if call.name in tools:
        return call
    where = workspace or "."
    if call.name == "list_dir":
        if name := _find(tools, {"ls"}, "path"):
            return PlannedCall(name, {"path": where})
        if (shell := _shell(tools, LIST_COMMAND, "List the files here")) is not None:
            return shell
        if name := _find(tools, {"glob"}, "pattern"):
            return PlannedCall(name, {"pattern": "*"})
        return None
    if call.name == "read_file":
        path = str(call.input.get("path"))
        if name := _find(tools, {"read"}, "file_path"):
            return PlannedCall(name, {"file_path": posixpath.join(where, path)})
        return _shell(tools, f"cat -- {shlex.quote(path)}", f"Read {path}")
    if call.name == "search_files":
        pattern = str(call.input.get("pattern"))
        if name := _find(tools, {"grep"}, "pattern"):
            props = _properties(tools[name])
            extra = {k: v for k, v in (("output_mode", "content"), ("-n", True)) if k in props}
            return PlannedCall(name, {"pattern": pattern, **extra})
        return _shell(tools, f"grep -rn -- {shlex.quote(pattern)} .", f"Search for {pattern}")
    if call.name == "run_command":
        command = str(call.input.get("command"))
        return _shell(tools, command, f"Run {command}")
    if call.name == "fetch_url" and (name := _find(tools, {"webfetch"}, "url")):
        return PlannedCall(name, {"url": call.input.get("url"), "prompt": "What does it say?"})
    return None


def _listing(rows: list[tuple[str, str, str]]) -> str:
    """Rows as list_dir writes them: `file SIZE name` (`-` for a size not known)."""
    return "\n".join(f"{kind} {size} {name}" for kind, size, name in rows)


def _relative(path: str, workspace: str | None) -> str:
    if workspace and path.startswith(workspace.rstrip("/") + "/"):
        return path[len(workspace.rstrip("/")) + 1 :]
    return path.removeprefix("./")


def native(call: PlannedCall, result: str, workspace: str | None) -> tuple[PlannedCall, str]:
    """A call of another agent's tool and its result, as the tuiagent tool that does the
    same would have made and returned them (unknown calls are left as they are)."""
    name, args = call.name.lower(), call.input
    command = str(args.get("command", ""))
    if name in ("bash", "shell") and command == LIST_COMMAND:
        rows = []
        for line in result.splitlines():
            if m := _LS_LINE.match(line):
                kind = _KINDS.get(m.group(1), "file")
                rows.append((kind, m.group(2), m.group(3).split(" -> ")[0]))
        return PlannedCall("list_dir", {"path": "."}), _listing(rows)
    if name == "ls":
        rows = []
        for line in result.splitlines()[1:]:  # the first line names the folder listed
            entry = line.strip().removeprefix("- ")
            if entry and not line.startswith("NOTE"):
                kind = "dir" if entry.endswith("/") else "file"
                rows.append((kind, "-", entry.rstrip("/")))
        return PlannedCall("list_dir", {"path": "."}), _listing(rows)
    if name == "glob":
        paths = [_relative(p.strip(), workspace) for p in result.splitlines() if p.strip()]
        return PlannedCall("list_dir", {"path": "."}), _listing([("file", "-", p) for p in paths])
    if name == "read" and "file_path" in args:
        path = _relative(str(args["file_path"]), workspace)
        return PlannedCall("read_file", {"path": path}), _NUMBERED.sub("", result)
    if name in ("bash", "shell") and command.startswith("cat -- "):
        path = " ".join(shlex.split(command)[2:])
        return PlannedCall("read_file", {"path": path}), result
    if name == "grep" and "pattern" in args:
        lines = [_relative(ln, workspace) for ln in result.splitlines()]
        return PlannedCall("search_files", {"pattern": args["pattern"]}), "\n".join(lines)
    if name in ("bash", "shell") and command.startswith("grep -rn -- "):
        pattern = shlex.split(command)[3]
        lines = [ln.removeprefix("./") for ln in result.splitlines()]
        return PlannedCall("search_files", {"pattern": pattern}), "\n".join(lines)
    if name in ("bash", "shell") and command:
        return PlannedCall("run_command", {"command": command}), f"done\n--- stdout ---\n{result}"
    if name == "webfetch" and "url" in args:
        return PlannedCall("fetch_url", {"url": args["url"]}), f"fetched\n\n{result}"
    return call, result
