"""The agents panel: each sub-agent of the session, its task, tier, turns, spend against its
slice, and state. Mounted when the first sub-agent starts."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from tuiagent.ui.format import money

if TYPE_CHECKING:
    from tuiagent.agent.events import SubAgentChanged

ZERO = Decimal(0)
# Running ones first, then those waiting, then those done.
ORDER = {"running": 0, "queued": 1}
# How each state reads: running ones stand out, the ones that did not finish are marked.
STATE_STYLE = {
    "queued": "dim",
    "running": "bold",
    "completed": "",
    "stopped": "bold yellow",
    "failed": "bold red",
    "interrupted": "yellow",
}


class AgentsPanel(Static):
    DEFAULT_CSS = """
    AgentsPanel { height: auto; max-height: 18; border: round $secondary 50%; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Agents"
        self.agents: dict[str, SubAgentChanged] = {}

    def stopped(self) -> None:
        """The turn was stopped (Escape): the delegate tool ended every sub-agent with it,
        too late for their last events to arrive."""
        for event in list(self.agents.values()):
            if event.state in ("queued", "running"):
                self.update_agent(dataclasses.replace(event, state="interrupted", in_flight=ZERO))

    @property
    def running(self) -> int:
        return sum(a.state == "running" for a in self.agents.values())

    def update_agent(self, event: SubAgentChanged) -> None:
        self.agents[event.agent] = event
        running = self.running
        self.border_subtitle = f"{running} running" if running else ""
        text = Text()
        order = sorted(self.agents.values(), key=lambda a: ORDER.get(a.state, 9))
        for a in order:
            if text:
                text.append("\n")
            text.append(f"{a.agent:<3} ", style="bold")
            text.append(f"{a.state:<11}", style=STATE_STYLE.get(a.state, ""))
            # What it has spent of its slice (a call in flight shows once it is billed: the
            # worst case held for it is the gauge's, and would read as spend that shrinks).
            turns = f"{a.turns} turn{'' if a.turns == 1 else 's'}"
            text.append(f" {money(a.spent, 5)}/{money(a.slice_usd, 3)} {turns}\n")
            line = f"    {a.tier} · {a.task}"
            text.append(line if len(line) <= 40 else line[:39] + "…", style="dim")
        self.update(text)
