"""The agent's events, each shown by the widgets that show its kind.

A widget (or the app) that shows a kind of event has a method named after it, the way
Textual names message handlers: `when_turn_finished(self, event: TurnFinished)` shows
`TurnFinished` (agent/events.py). `EventRoutes.subscribe(node)` finds those methods;
`deliver(event)` calls each one for the event's kind, in the order the nodes subscribed,
and awaits the async ones. A sub-agent's records reach only the methods marked
`@every_agent`: the chat, router and cache panels are the orchestrator's; the turns table
and the gauge count every agent's calls.

Nothing here imports the events: the screen's first frame does not wait for them.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from textual.case import camel_to_snake

PREFIX = "when_"
Handler = Callable[[Any], Awaitable[None] | None]
F = TypeVar("F", bound=Callable[..., Any])


def every_agent(method: F) -> F:
    """Show this kind of event from the sub-agents too (their calls, for instance)."""
    method.every_agent = True  # type: ignore[attr-defined]
    return method


def handler_name(kind: type) -> str:
    return PREFIX + camel_to_snake(kind.__name__)


def _from_sub_agent(event: object) -> bool:
    """A run-log record (agent/events.py LogRecord) that a sub-agent wrote."""
    record = getattr(event, "record", None)
    return getattr(record, "agent", None) not in (None, "main")


class EventRoutes:
    """Who shows which kind of agent event."""

    def __init__(self) -> None:
        self._nodes: list[object] = []
        self._routes: dict[type, list[tuple[Handler, bool]]] = {}

    def subscribe(self, *nodes: object) -> None:
        self._nodes += [n for n in nodes if n not in self._nodes]
        self._routes.clear()

    def unsubscribe(self, node: object) -> None:
        if node in self._nodes:
            self._nodes.remove(node)
            self._routes.clear()

    def _route(self, kind: type) -> list[tuple[Handler, bool]]:
        name = handler_name(kind)
        route = []
        for node in self._nodes:
            method = getattr(node, name, None)
            if method is not None:
                route.append((method, getattr(method, "every_agent", False)))
        self._routes[kind] = route
        return route

    async def deliver(self, event: object) -> None:
        """Show one event: each handler of its kind, in turn."""
        route = self._routes.get(type(event))
        if route is None:
            route = self._route(type(event))
        if not route:
            return
        sub_agent = _from_sub_agent(event)
        for handler, every in route:
            if sub_agent and not every:
                continue
            result = handler(event)
            if inspect.isawaitable(result):
                await result
