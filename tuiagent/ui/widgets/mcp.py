"""The MCP panel: each server's tools and what their definitions cost, per call and in the
session. Self-contained: the screen mounts it in the side column at a server's first
record and hands it the `mcp` and `mcp_cost` records (`seen`); it reads nothing else."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from textual.widgets import Static

from tuiagent.runs.records import McpCost, McpServerState
from tuiagent.terminal import printable
from tuiagent.ui.format import money


@dataclass
class _Server:
    state: str
    tools: int
    tokens: int
    last_usd: Decimal | None = None
    session_usd: Decimal = field(default_factory=Decimal)
    deferred: bool = False  # its definitions go through the API's tool search


class McpPanel(Static):
    DEFAULT_CSS = """
    McpPanel { height: auto; max-height: 8; border: round $secondary 50%; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, markup=False)
        self.border_title = "MCP servers"
        self.servers: dict[str, _Server] = {}

    def seen(self, r: McpServerState | McpCost) -> None:
        if isinstance(r, McpServerState):
            known = self.servers.get(r.server)
            # Deferred, a call holds only what searches load: known from its first mcp_cost.
            tokens = r.definition_tokens if r.status == "started" and not r.deferred else 0
            if known is None:
                self.servers[r.server] = _Server(
                    r.status, r.tools, tokens, deferred=bool(r.deferred)
                )
            else:
                known.state = r.status
        else:
            for name, usd in r.cost_usd.items():
                server = self.servers.setdefault(name, _Server("started", 0, 0))
                server.tokens = r.tokens.get(name, server.tokens)
                server.last_usd = usd
                server.session_usd = r.session_cost_usd.get(name, server.session_usd)
        self.update(self.text())

    def text(self) -> str:
        lines = []
        for name, s in self.servers.items():
            head = f"{printable(name)} {s.state}"
            if s.state != "started":
                lines.append(f"{head}: no tools")
                continue
            cost = (
                f"{money(s.last_usd, 5)}/call · {money(s.session_usd, 5)} in all"
                if s.last_usd is not None
                else "not sent yet"
            )
            tools = f"{s.tools} tools" + (" via tool search" if s.deferred else "")
            lines.append(f"{head} · {tools}, {s.tokens:,} tok/call · {cost}")
        return "\n".join(lines)
