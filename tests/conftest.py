from __future__ import annotations

import asyncio
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from tuiagent.agent.events import Event
from tuiagent.config import Settings
from tuiagent.offline import OfflineModel
from tuiagent.session import Session, open_session

WIRE = Path(__file__).parent / "fixtures" / "wire"


def wire(name: str) -> dict[str, Any]:
    """A recorded cassette from shared/wire (copied into tests/fixtures/wire)."""
    data: dict[str, Any] = yaml.safe_load((WIRE / name).read_text())
    return data


def wire_body(interaction: dict[str, Any]) -> str:
    """The response body of one recorded interaction, in either cassette dialect."""
    response = interaction["response"]
    if "parsed_body" in response:
        return json.dumps(response["parsed_body"])
    body = response["body"]
    if "string" in body:
        return str(body["string"])
    if "content" in body:
        content = body["content"]
        return content if isinstance(content, str) else json.dumps(content)
    return json.dumps(interaction["response"]["parsed_body"])


@pytest.fixture(autouse=True, scope="session")
def _session_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Module and session fixtures too (they run before each test's own dirs are set) keep
    their data (runs, the ledger) and config out of the user's home."""
    root = tmp_path_factory.mktemp("session-dirs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_DATA_HOME", str(root / "data"))
        patch.setenv("XDG_CONFIG_HOME", str(root / "config"))
        yield


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never need a key and never reach the network."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    monkeypatch.delenv("TUIAGENT_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no config.toml there
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # the ledger, the runs


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 for this test session (tests/postgres.py);
    the tests that use it are skipped where no server binaries are installed, and fail
    instead under TUIAGENT_REQUIRE_PG=1 (CI: the PostgreSQL half is never left unrun)."""
    from tests import postgres

    why = postgres.available()
    if why is not None:
        if os.environ.get("TUIAGENT_REQUIRE_PG") == "1":
            pytest.fail(f"TUIAGENT_REQUIRE_PG=1 and {why}")
        pytest.skip(why)
    with postgres.cluster() as url:
        yield url


@pytest.fixture
def pg_url(pg_cluster: str, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database in the session's cluster."""
    from tests import postgres

    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:50].lower()
    return postgres.fresh_database(pg_cluster, name)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "README.md").write_text("# Demo project\nA small workspace for tests.\n")
    (ws / "notes.txt").write_text("alpha\nbeta\ngamma\n")
    (ws / "data.csv").write_text("id,value\n" + "".join(f"{i},{i * i}\n" for i in range(400)))
    (ws / "src").mkdir()
    (ws / "src" / "app.py").write_text("def main():\n    return 'TODO: ship it'\n")
    return ws


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "logs"


def offline_answer(body: Any, path: str = "/v1/messages") -> httpx2.Response:
    """The offline model's whole answer to one request, in this process (no server)."""

    async def go() -> httpx2.Response:
        request = httpx2.Request("POST", "http://offline" + path, json=body)
        response = await OfflineModel().handle_async_request(request)
        await response.aread()
        return response

    return asyncio.run(go())


def billed_input(record: dict[str, Any]) -> int:
    """Every input token a call's record says was billed: uncached, written and read."""
    return int(
        record["input_tokens"]
        + record["cache_creation_input_tokens"]
        + record["cache_read_input_tokens"]
    )


def cli_env(**extra: str) -> dict[str, str]:
    """This process's environment without ANTHROPIC_* (no key, no base URL), plus `extra`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    return {**base, **extra}


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`tuiagent ARGS` in a subprocess, as a user runs it (in `cwd`, if given)."""
    return subprocess.run(
        [sys.executable, "-m", "tuiagent", *args],
        capture_output=True,
        text=True,
        env=cli_env(**(env or {})),
        timeout=120,
        cwd=cwd,
    )


def start_cli(*args: str) -> subprocess.Popen[str]:
    """`tuiagent ARGS` started in the background, to be signalled by the test."""
    return subprocess.Popen(
        [sys.executable, "-m", "tuiagent", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )


def offline_session(workspace: Path, log_dir: Path, **overrides: Any) -> Session:
    settings = Settings().with_changes(log_dir=log_dir)
    settings = settings.with_changes(**overrides)
    return open_session(settings, workspace=workspace, offline=True)


async def collect(session: Session, prompt: str) -> list[Event]:
    events: list[Event] = [session.agent.start()]
    async for event in session.agent.send(prompt):
        events.append(event)
    return events


@pytest.fixture
def hostile(workspace: Path) -> Iterator[Path]:
    """The test workspace plus a FIFO, a socket, symlink loops and a link to /dev/zero."""
    os.mkfifo(workspace / "pipe.fifo")
    os.symlink("self.txt", workspace / "self.txt")
    os.symlink("b.txt", workspace / "a.txt")
    os.symlink("a.txt", workspace / "b.txt")
    os.symlink(".", workspace / "loop")
    os.symlink("/dev/zero", workspace / "zero.bin")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(workspace / "app.sock"))
    yield workspace
    sock.close()


def processes_with(marker: str) -> list[int]:
    """The `sleep` processes alive whose arguments hold `marker` (a made-up duration)."""
    found = []
    for name in os.listdir("/proc"):
        try:
            argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            name.isdigit()
            and Path(os.fsdecode(argv[0])).name == "sleep"
            and marker.encode() in argv
        ):
            found.append(int(name))
    return found


class _Trickle(http.server.BaseHTTPRequestHandler):
    """Promises 1,000 bytes and sends one every 0.2 s."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", "1000")
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def trickle() -> Iterator[str]:
    """The URL of a 127.0.0.1 server that trickles its body (see _Trickle)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/slow"
    httpd.shutdown()
    httpd.server_close()
