"""The offline model with another agent's tools (the coding agent's Bash, Read, Grep, Glob,
LS, WebFetch, as it sends them): the same plan in the tools offered, read back the same way.
The tool results are real: `ls -lA` and `grep -rn` run here, Read's numbered lines."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tuiagent.offline.brain import reply


def tool(name: str, *props: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "name": name,
        "description": f"the coding agent's {name}",
        "input_schema": {
            "type": "object",
            "properties": {p: {"type": "string"} for p in props},
            "required": list(required or props[:1]),
        },
    }


BASH = tool("Bash", "command", "timeout", "description")
READ = tool("Read", "file_path", "offset", "limit")
GREP = tool("Grep", "pattern", "path", "output_mode", "-n")
GLOB = tool("Glob", "pattern", "path")
LS = tool("LS", "path")
WEBFETCH = tool("WebFetch", "url", "prompt", required=("url", "prompt"))
# As the coding agent sends them: its environment in the system prompt, reminders in the turn.
SYSTEM = [
    {"type": "text", "text": "You are a Claude agent."},
    {
        "type": "text",
        "text": "# Environment\n - Primary working directory: {cwd}\n - Platform: linux",
    },
]
REMINDER = (
    "<system-reminder>\nToday's date is 2026-12-07. Read the files listed.\n</system-reminder>"
)


def body(
    cwd: Path, ask: str, tools: list[dict[str, Any]], *turns: dict[str, Any]
) -> dict[str, Any]:
    system = [{**b, "text": b["text"].replace("{cwd}", str(cwd))} for b in SYSTEM]
    first = {
        "role": "user",
        "content": [{"type": "text", "text": REMINDER}, {"type": "text", "text": ask}],
    }
    return {
        "model": "claude-opus-4-8",
        "system": system,
        "tools": tools,
        "messages": [first, *turns],
    }


def answered(request: dict[str, Any], result: str) -> dict[str, Any]:
    """The request, its model's tool call, and the tool's result (with a reminder, as the
    coding agent adds one to the same turn)."""
    turn = reply(request)
    assert turn.tool_call is not None, turn.text
    call = {
        "type": "tool_use",
        "id": "toolu_1",
        "name": turn.tool_call.name,
        "input": turn.tool_call.input,
    }
    back = {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": result},
            {"type": "text", "text": REMINDER},
        ],
    }
    return {
        **request,
        "messages": [*request["messages"], {"role": "assistant", "content": [call]}, back],
    }


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "notes.txt").write_text("remember the milk\nand the TODO list\n")
    (tmp_path / "main.py").write_text("# TODO: ship it\nprint('hi')\n" * 20)
    (tmp_path / "src").mkdir()
    return tmp_path


def sh(command: str, cwd: Path) -> str:
    return subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True).stdout


def test_list_through_bash_then_the_answer_from_its_ls(work: Path) -> None:
    request = body(work, "list the files here and name the largest", [BASH, READ])
    call = reply(request).tool_call
    assert call is not None and call.name == "Bash"
    assert call.input == {"command": "ls -lA", "description": "List the files here"}
    final = reply(answered(request, sh(call.input["command"], work)))
    assert final.tool_call is None
    size = (work / "main.py").stat().st_size
    assert final.text == (
        f"The workspace has 2 files and 1 folder. The largest file is main.py ({size:,} bytes)."
    )


def test_read_through_read_with_the_absolute_path_and_numbered_lines(work: Path) -> None:
    request = body(work, "read notes.txt", [BASH, READ])
    call = reply(request).tool_call
    assert call is not None and call.name == "Read"
    assert call.input == {"file_path": f"{work}/notes.txt"}
    numbered = "     1\tremember the milk\n     2\tand the TODO list\n"
    final = reply(answered(request, numbered))
    assert final.text == "notes.txt: remember the milk (2 lines seen)."


def test_search_through_grep_asks_for_lines_and_counts_them(work: Path) -> None:
    request = body(work, 'search for "TODO"', [BASH, READ, GREP])
    call = reply(request).tool_call
    assert call is not None and call.name == "Grep"
    assert call.input == {"pattern": "TODO", "output_mode": "content", "-n": True}
    found = sh("grep -rn TODO .", work).replace("./", f"{work}/")
    final = reply(answered(request, found))
    assert final.text == "Search for 'TODO': 21 matching lines in 2 files."


def test_search_and_read_through_bash_alone(work: Path) -> None:
    request = body(work, "search for TODO", [BASH])
    call = reply(request).tool_call
    assert call is not None and call.input["command"] == "grep -rn -- TODO ."
    assert reply(answered(request, sh(call.input["command"], work))).text == (
        "Search for 'TODO': 21 matching lines in 2 files."
    )
    request = body(work, "read notes.txt", [BASH])
    call = reply(request).tool_call
    assert call is not None and call.input["command"] == "cat -- notes.txt"
    assert reply(answered(request, sh(call.input["command"], work))).text == (
        "notes.txt: remember the milk (2 lines seen)."
    )


@pytest.mark.parametrize(
    ("tools", "result"),
    [
        ([GLOB], "{cwd}/main.py\n{cwd}/notes.txt\n"),
        ([LS], "- {cwd}/\n  - main.py\n  - notes.txt\n  - src/\n"),
    ],
)
def test_list_through_glob_or_ls(work: Path, tools: list[dict[str, Any]], result: str) -> None:
    request = body(work, "list the files", tools)
    call = reply(request).tool_call
    assert call is not None and call.name == tools[0]["name"]
    final = reply(answered(request, result.replace("{cwd}", str(work))))
    assert final.text.startswith("The workspace has 2 files") and "main.py, notes.txt" in final.text


def test_a_command_and_a_url_through_bash_and_webfetch(work: Path) -> None:
    request = body(work, "run `echo hi`", [BASH, WEBFETCH])
    call = reply(request).tool_call
    assert call is not None and call.input == {"command": "echo hi", "description": "Run echo hi"}
    assert reply(answered(request, "hi\n")).text == "`echo hi`: done; hi (1 line seen)."
    request = body(work, "what is on https://example.com/page", [BASH, WEBFETCH])
    call = reply(request).tool_call
    assert call is not None and call.name == "WebFetch"
    assert call.input["url"] == "https://example.com/page"


def test_reminders_are_not_what_the_user_asked(work: Path) -> None:
    """The reminder says 'Read the files listed': neither a request to read nor to list, and
    a tool result's turn with a reminder in it does not start the task again."""
    request = body(work, "hello", [BASH, READ])
    assert reply(request).tool_call is None
    request = body(work, "list the files", [BASH, READ])
    final = reply(answered(request, sh("ls -lA", work)))
    assert final.tool_call is None and final.text.startswith("The workspace has 2 files")


def test_a_tool_it_cannot_use_is_skipped_not_invented(work: Path) -> None:
    request = body(work, "read notes.txt", [WEBFETCH])
    turn = reply(request)
    assert turn.tool_call is None and "simulated" in turn.text
