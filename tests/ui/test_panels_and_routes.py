"""A side panel's height follows its lines (it is laid out again only when they change),
and each agent event reaches the handlers of its kind (ui/agent_events.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from textual.app import App, ComposeResult

from tests.support.app import idle, ready, send
from tuiagent.ui.agent_events import EventRoutes, every_agent
from tuiagent.ui.app import TuiagentApp
from tuiagent.ui.widgets.panel import Panel


class OnePanel(App[None]):
    CSS = "Panel { width: 20; height: auto; }"

    def compose(self) -> ComposeResult:
        yield Panel("one line")


def shown(panel: Panel) -> str:
    return "\n".join(strip.text.rstrip() for strip in panel.render_lines(panel.region.reset_offset))


async def test_a_panel_grows_and_shrinks_with_its_lines_and_shows_each_text() -> None:
    app = OnePanel()
    async with app.run_test(size=(40, 12)) as pilot:
        panel = app.query_one(Panel)
        await pilot.pause()
        assert panel.size.height == 1
        panel.show("a\nb\nc")
        await pilot.pause()
        assert panel.size.height == 3
        panel.show("x\ny\nz")  # as many lines: drawn again in place
        await pilot.pause()
        assert panel.size.height == 3
        assert shown(panel).split() == ["x", "y", "z"]
        panel.show("word " * 12)  # one line of text that wraps at 20 columns
        await pilot.pause()
        assert panel.size.height == 3
        panel.show("short")
        await pilot.pause()
        assert panel.size.height == 1
        assert shown(panel).strip() == "short"


@dataclass
class Said:
    text: str


@dataclass
class Record:
    agent: str


@dataclass
class Noted:
    record: Record


class Node:
    def __init__(self, name: str, seen: list[tuple[str, Any]]) -> None:
        self.name, self.seen = name, seen

    def when_said(self, event: Said) -> None:
        self.seen.append((self.name, event.text))

    def when_noted(self, event: Noted) -> None:
        self.seen.append((self.name, event.record.agent))


class EveryAgentNode(Node):
    @every_agent
    def when_noted(self, event: Noted) -> None:
        self.seen.append((self.name, event.record.agent))


def test_each_event_reaches_its_kinds_handlers_in_order_and_sub_agents_records_only_some() -> None:
    seen: list[tuple[str, Any]] = []
    routes = EventRoutes()
    routes.subscribe(Node("one", seen))
    routes.deliver(Said("hi"))
    assert seen == [("one", "hi")]
    routes.subscribe(EveryAgentNode("two", seen))  # a new node: the routes are made again
    seen.clear()
    routes.deliver(Said("again"))
    routes.deliver(Noted(Record("main")))
    routes.deliver(Noted(Record("sub-1")))  # a sub-agent's record: only `every_agent` ones
    routes.deliver(3)  # a kind nobody shows
    assert seen == [
        ("one", "again"),
        ("two", "again"),
        ("one", "main"),
        ("two", "main"),
        ("two", "sub-1"),
    ]


async def test_on_a_tall_screen_the_first_call_grows_no_panel(
    make_app: Callable[..., TuiagentApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The router's and the cache's first answers fit the room a tall screen keeps for them:
    neither panel asks for a layout of the whole screen (each did, twice in all, before the
    first call's answer had streamed: bench_ui's stream ratio)."""
    grown: list[str] = []
    refresh = Panel.refresh

    def counting(self: Panel, *regions: Any, **how: Any) -> Any:
        if how.get("layout"):
            grown.append(str(self.id))
        return refresh(self, *regions, **how)

    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot)
        await pilot.pause()
        monkeypatch.setattr(Panel, "refresh", counting)
        await send(pilot, "Tell me about this project")
        await idle(pilot)
        router = app.main.query_one("#router", Panel)
        assert "last turn 1" in str(router.content)
        assert grown == []
