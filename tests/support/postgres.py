"""A throwaway PostgreSQL cluster on 127.0.0.1 for the tests and the benchmark.

The server's own binaries (PostgreSQL 15 at /usr/lib/postgresql/15/bin, or TUIAGENT_PG_BIN):
initdb into a fresh directory, started on a free port, removed at the end. initdb refuses to
run as root, so as root (CI) the cluster runs as the `postgres` user, in a directory it owns.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

PG_BIN = Path(os.environ.get("TUIAGENT_PG_BIN", "/usr/lib/postgresql/15/bin"))
SERVER_USER = "postgres"  # who runs the cluster when we are root


def available() -> str | None:
    """Why no cluster can be started here, or None."""
    if not (PG_BIN / "initdb").exists():
        return f"no PostgreSQL server binaries in {PG_BIN} (set TUIAGENT_PG_BIN)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root and there is no {SERVER_USER!r} user to run the cluster"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server(argv: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--", *argv] if os.geteuid() == 0 else argv


@contextlib.contextmanager
def cluster(*, durable: bool = False, max_connections: int = 200) -> Iterator[str]:
    """A running cluster; yields its URL (user `tuiagent`, trust auth on 127.0.0.1 only).
    `durable` keeps fsync on (the benchmark's figures); the tests turn it off."""
    why = available()
    if why is not None:
        raise RuntimeError(why)
    root = Path(tempfile.mkdtemp(prefix="tuiagent-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam(SERVER_USER)
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data, port = root / "data", _free_port()
    subprocess.run(
        _as_server(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "tuiagent",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ]
        ),
        check=True,
        capture_output=True,
    )
    settings = [
        f"port={port}",
        "listen_addresses=127.0.0.1",
        f"unix_socket_directories={root}",
        f"max_connections={max_connections}",
        "shared_buffers=64MB",
    ]
    if not durable:
        settings += ["fsync=off", "full_page_writes=off"]
    options = " ".join(f"-c {s}" for s in settings)
    log = root / "server.log"
    started = subprocess.run(
        _as_server(
            [str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"]
        ),
        capture_output=True,
        text=True,
    )
    if started.returncode != 0:
        text = log.read_text() if log.exists() else started.stderr
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {text[-2000:]}")
    # Should this process be killed (a test run stopped with SIGKILL), its cluster goes too.
    watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(root), *_as_server([])],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"postgresql://tuiagent@127.0.0.1:{port}/postgres"
    finally:
        watchdog.kill()
        watchdog.wait()
        subprocess.run(
            _as_server([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


_WATCHDOG = f"""
import os, shutil, subprocess, sys, time
parent, root, runas = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
while True:
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        break
    time.sleep(1)
subprocess.run([*runas, "{PG_BIN / "pg_ctl"}", "-D", root + "/data", "-m", "immediate", "stop"],
               capture_output=True)
shutil.rmtree(root, ignore_errors=True)
"""


def fresh_database(url: str, name: str) -> str:
    """A new empty database in the cluster at `url`; its URL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + f"/{name}"
