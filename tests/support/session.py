"""An offline session opened as the app opens one, and a turn's events collected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuiagent.agent.events import Event
from tuiagent.config import Settings
from tuiagent.session import Session, open_session


def offline_session(workspace: Path, log_dir: Path, **overrides: Any) -> Session:
    settings = Settings().with_changes(log_dir=log_dir)
    settings = settings.with_changes(**overrides)
    return open_session(settings, workspace=workspace, offline=True)


async def collect(session: Session, prompt: str) -> list[Event]:
    events: list[Event] = [session.agent.start()]
    async for event in session.agent.send(prompt):
        events.append(event)
    return events


def billed_input(record: dict[str, Any]) -> int:
    """Every input token a call's record says was billed: uncached, written and read."""
    return int(
        record["input_tokens"]
        + record["cache_creation_input_tokens"]
        + record["cache_read_input_tokens"]
    )
