"""run_command and fetch_url, and the bad input every tool turns into a clear error result."""

from __future__ import annotations

import asyncio
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.session import collect, offline_session
from tuiagent.agent.events import ToolFinished
from tuiagent.agent.tools import Toolbox, Workspace
from tuiagent.agent.tools.command import CommandRunner
from tuiagent.agent.tools.fetch import Fetcher
from tuiagent.config import settings_from_toml
from tuiagent.errors import ConfigError


@pytest.fixture
def box(workspace: Path) -> Toolbox:
    ws = Workspace(workspace)
    toolbox = Toolbox()
    for tool in ws.tools():
        toolbox.add(tool)
    toolbox.add(CommandRunner(ws, timeout_s=1.0, cap=4000).tool())
    toolbox.add(Fetcher(timeout_s=5.0).tool())
    return toolbox


# --- run_command ---------------------------------------------------------------------


async def test_command_runs_in_the_workspace_without_the_key(
    box: Toolbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret-value")
    out = await box.call("run_command", {"command": "ls; echo KEY=${ANTHROPIC_API_KEY:-unset}"})
    assert not out.is_error
    assert out.text.startswith("exit status 0\n--- stdout ---\n")
    assert "notes.txt" in out.text and "KEY=unset" in out.text
    assert "sk-ant-secret-value" not in out.text


async def test_command_failure_reports_status_and_stderr(box: Toolbox) -> None:
    out = await box.call("run_command", {"command": "echo oops >&2; exit 3"})
    assert out.text.startswith("exit status 3") and "--- stderr ---\noops" in out.text


async def test_a_hanging_command_is_killed_and_reported(box: Toolbox, tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    out = await box.call(
        "run_command", {"command": f"echo started; sleep 3 && touch {marker}; cat"}
    )
    assert out.is_error
    assert "timed out after 1s and was killed" in out.text and "started" in out.text
    await asyncio.sleep(2.5)  # longer than the command would have lived
    assert not marker.exists()  # the whole process group is gone, not only the shell


async def test_command_output_is_capped_head_and_tail(box: Toolbox) -> None:
    out = await box.call("run_command", {"command": "seq 1 100000"})
    assert "\n1\n2\n" in out.text and out.text.rstrip().endswith("100000")
    assert "bytes of output dropped" in out.text and len(out.text) < 5000


async def test_commands_are_off_by_default_and_asked_for_when_on(
    workspace: Path, log_dir: Path
) -> None:
    off = offline_session(workspace, log_dir)
    assert "run_command" not in [t["name"] for t in off.agent.toolbox.definitions()]
    session = offline_session(workspace, log_dir, allow_commands=True)
    asked: list[tuple[str, dict[str, Any]]] = []

    async def decline(name: str, args: dict[str, Any]) -> bool:
        asked.append((name, args))
        return False

    session.agent.approve = decline
    events = await collect(session, "Please run `touch made-by-agent`")
    (tool,) = [e for e in events if isinstance(e, ToolFinished)]
    assert asked == [("run_command", {"command": "touch made-by-agent"})]
    assert not tool.record.to_json()["ok"] and "declined" in tool.output
    assert not (workspace / "made-by-agent").exists()

    async def accept(name: str, args: dict[str, Any]) -> bool:
        return True

    session.agent.approve = accept
    async for _ in session.agent.send("Please run `touch made-by-agent`"):
        pass
    assert (workspace / "made-by-agent").exists()


# --- fetch_url -----------------------------------------------------------------------


_ROUTES = {
    "/items.json": (200, "application/json", b'{"items": [1, 2, 3], "total": 3}'),
    "/logo.png": (200, "image/png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 5000),
    "/latin1.txt": (200, "text/plain; charset=iso-8859-1", "caf\u00e9".encode("latin-1")),
}


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, kind, body = _ROUTES.get(self.path, (404, "text/plain", b"not found"))
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


async def test_fetch_returns_status_type_and_body(box: Toolbox, server: str) -> None:
    out = await box.call("fetch_url", {"url": f"{server}/items.json"})
    assert (
        out.text
        == 'HTTP 200 OK\ncontent-type: application/json\n\n{"items": [1, 2, 3], "total": 3}'
    )
    missing = await box.call("fetch_url", {"url": f"{server}/nope"})
    assert missing.text.startswith("HTTP 404 Not Found") and not missing.is_error
    latin = await box.call("fetch_url", {"url": f"{server}/latin1.txt"})
    assert latin.text.endswith("caf\u00e9")


async def test_fetch_describes_binary_bodies(box: Toolbox, server: str) -> None:
    out = await box.call("fetch_url", {"url": f"{server}/logo.png"})
    assert "binary body (image/png), 5,008 bytes; not shown" in out.text
    assert "PNG" not in out.text.split("\n\n", 1)[1].replace("image/png", "")


async def test_fetch_errors_are_results(box: Toolbox, server: str) -> None:
    bad = await box.call("fetch_url", {"url": "file:///etc/passwd"})
    assert bad.is_error and "http:// or https://" in bad.text
    port = server.rsplit(":", 1)[1]
    closed = await box.call("fetch_url", {"url": f"http://127.0.0.1:{int(port) + 1}/x"})
    assert closed.is_error and "cannot fetch" in closed.text


async def test_fetch_end_to_end_offline(workspace: Path, log_dir: Path, server: str) -> None:
    session = offline_session(workspace, log_dir, allow_fetch=True)
    events = await collect(session, f"What does {server}/items.json return?")
    (tool,) = [e for e in events if isinstance(e, ToolFinished)]
    assert tool.record.to_json()["name"] == "fetch_url" and tool.record.to_json()["ok"]
    assert "items" in tool.output


# --- read_file bad input -------------------------------------------------------------


async def test_invalid_utf8_is_said_not_hidden(box: Toolbox, workspace: Path) -> None:
    (workspace / "latin.txt").write_bytes("caf\u00e9 ol\u00e9\n".encode("latin-1"))
    out = await box.call("read_file", {"path": "latin.txt"})
    assert not out.is_error
    assert out.text.startswith("[latin.txt is not valid UTF-8 (first bad byte at offset 3)")
    assert "caf\ufffd" in out.text


async def test_a_page_of_a_huge_file_is_read_without_loading_it(
    box: Toolbox, workspace: Path
) -> None:
    with (workspace / "huge.log").open("w") as fh:
        for i in range(300_000):
            fh.write(f"line {i} of the huge log\n")
    assert (workspace / "huge.log").stat().st_size > 2_000_000
    page = await box.call("read_file", {"path": "huge.log", "offset": 299_998, "limit": 5})
    assert page.text == "line 299998 of the huge log\nline 299999 of the huge log"
    whole = await box.call("read_file", {"path": "huge.log"})
    size = (workspace / "huge.log").stat().st_size
    assert whole.text.endswith(
        f"[read stopped at 2,000,000 bytes of {size:,}; use offset/limit to page]"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
async def test_permission_denied_is_a_result(box: Toolbox, workspace: Path) -> None:
    secret = workspace / "locked.txt"
    secret.write_text("hidden")
    secret.chmod(0)
    out = await box.call("read_file", {"path": "locked.txt"})
    assert out.is_error and out.text == "error: permission denied: locked.txt"


# --- config --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"compress": "yes"}, "'compress'"),
        ({"compress_over_tokens": 50}, "'compress_over_tokens'"),
        ({"compress_over_tokens": True}, "'compress_over_tokens'"),
        ({"summarize_results": 1}, "'summarize_results'"),
        ({"allow_commands": "true"}, "'allow_commands'"),
        ({"allow_fetch": None}, "'allow_fetch'"),
        ({"command_timeout_s": 0}, "'command_timeout_s'"),
        ({"compres": True}, "'compres'"),
    ],
)
def test_bad_config_names_the_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        settings_from_toml(data, "config.toml")


def test_config_keys_apply() -> None:
    settings = settings_from_toml(
        {
            "compress": False,
            "compress_over_tokens": 2500,
            "allow_commands": True,
            "command_timeout_s": 5,
        },
        "config.toml",
    )
    assert (settings.tools.compress, settings.tools.compress_over_tokens) == (False, 2500)
    assert settings.tools.allow_commands and settings.tools.command_timeout_s == 5.0
