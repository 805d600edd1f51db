from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tuiagent.agent.events import Event
from tuiagent.config import Settings
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


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never need a key and never reach the network."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    monkeypatch.delenv("TUIAGENT_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no config.toml there


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


def cli_env(**extra: str) -> dict[str, str]:
    """This process's environment without ANTHROPIC_* (no key, no base URL), plus `extra`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    return {**base, **extra}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`tuiagent ARGS` in a subprocess, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "tuiagent", *args],
        capture_output=True,
        text=True,
        env=cli_env(**(env or {})),
        timeout=120,
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
    settings = Settings(log_dir=log_dir)
    for key, value in overrides.items():
        setattr(settings, key, value)
    return open_session(settings, workspace=workspace, offline=True)


async def collect(session: Session, prompt: str) -> list[Event]:
    events: list[Event] = [session.agent.start()]
    async for event in session.agent.send(prompt):
        events.append(event)
    return events
