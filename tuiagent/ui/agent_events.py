"""The agent's events, each shown by the widgets that show its kind.

A widget (or the app) that shows a kind of event has a method named after it, the way
Textual names message handlers: `when_turn_finished(self, event: TurnFinished)` shows
`TurnFinished` (agent/events.py). `EventRoutes.subscribe(node)` finds those methods;
`deliver(event)` calls each one for the event's kind, in the order the nodes subscribed.
Handlers are plain functions: an event is shown before the next is taken from the agent, and
the agent is never cancelled (Escape) while a handler draws. A sub-agent's records reach
only the methods marked
`@every_agent`: the chat, router and cache panels are the orchestrator's; the turns table
and the gauge count every agent's calls.

Nothing here imports the events: the screen's first frame does not wait for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from textual.case import camel_to_snake

PREFIX = "when_"
Handler = Callable[[Any], None]
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
        # kind -> one function that shows it: its handler itself when it has one and no
        # sub-agent can send it (an answer's every token goes straight to the chat).
        self._routes: dict[type, Handler] = {}

    def subscribe(self, *nodes: object) -> None:
        self._nodes += [n for n in nodes if n not in self._nodes]
        self._routes.clear()

    def unsubscribe(self, node: object) -> None:
        if node in self._nodes:
            self._nodes.remove(node)
            self._routes.clear()

    def _route(self, kind: type) -> Handler:
        name = handler_name(kind)
        handlers = []
        for node in self._nodes:
            method = getattr(node, name, None)
            if method is not None:
                handlers.append((method, getattr(method, "every_agent", False)))
        # Only records can be a sub-agent's (the fields of the event kind say so).
        if "record" in getattr(kind, "__dataclass_fields__", {}):
            show = _showing_records(handlers)
        elif len(handlers) == 1:
            show = handlers[0][0]
        else:
            show = _showing_each([method for method, _ in handlers])
        self._routes[kind] = show
        return show

    def deliver(self, event: object) -> None:
        """Show one event: each handler of its kind, in turn."""
        kind = type(event)
        (self._routes.get(kind) or self._route(kind))(event)


def _showing_each(handlers: list[Handler]) -> Handler:
    def show(event: object) -> None:
        for handler in handlers:
            handler(event)

    return show


def _showing_records(handlers: list[tuple[Handler, bool]]) -> Handler:
    """A record goes to every handler, a sub-agent's only to those marked `every_agent`."""

    def show(event: object) -> None:
        sub_agent = _from_sub_agent(event)
        for handler, every in handlers:
            if every or not sub_agent:
                handler(event)

    return show
