from __future__ import annotations

import contextlib
import http.server
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


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


@pytest.fixture(autouse=True)
def _ledgers_closed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each ledger a test opens is closed when the test ends (an app under test is not run to
    its end, where the run closes it): left open, each kept a writer thread beating its
    lease, a worker held 100+ of them by the suite's end, and its last tests starved (one of
    16 s took 245 s; others timed out)."""
    from tuiagent.ledger.store import Ledger

    opened: list[Ledger] = []
    init = Ledger.__init__

    def tracked(self: Ledger, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(Ledger, "__init__", tracked)
    yield
    for ledger in opened:
        with contextlib.suppress(Exception):
            ledger.close()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 for this test session (tests/support/postgres.py);
    the tests that use it are skipped where no server binaries are installed, and fail
    instead under TUIAGENT_REQUIRE_PG=1 (CI: the PostgreSQL half is never left unrun)."""
    from tests.support import postgres

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
    from tests.support import postgres

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
