"""The router panel: auto or pinned, the model of the last call and why it was chosen."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.reactive import reactive

from tuiagent.ui.widgets.panel import Panel

if TYPE_CHECKING:
    from tuiagent.agent.events import TurnFinished, TurnStarted
    from tuiagent.runs.records import Turn


class RouterPanel(Panel):
    tier: reactive[str] = reactive("auto", init=False)
    """The tier setting: auto, or the pinned tier."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, markup=False)
        self.border_title = "Router"
        self.last: str = "-"
        self.reason: str = "-"
        self.candidates: str | None = None

    def on_mount(self) -> None:
        self._render_panel()

    def watch_tier(self) -> None:
        self._render_panel()

    def when_turn_started(self, event: TurnStarted) -> None:
        self.routed(event.tier, event.model, event.route_reason, event.turn)

    def when_turn_finished(self, event: TurnFinished) -> None:
        self.add_turn(event.record)

    def routed(self, tier: str, model: str, reason: str, turn: int | None = None) -> None:
        self.last = f"{'turn ' + str(turn) + ' ' if turn else ''}{tier} {model}"
        self.reason = reason
        self._render_panel()

    def add_turn(self, record: Turn) -> None:
        candidates = record.route_candidates
        if candidates:
            # "fast $0.00006 · balanced $0.0012 (warm 4,096)": what each tier would have cost.
            self.candidates = " · ".join(
                f"{c.get('tier')} ${float(c.get('predicted_cost_usd') or 0):.5f}"
                + (
                    f" (warm {c['cached_prefix_tokens']:,})"
                    if c.get("cached_prefix_tokens")
                    else ""
                )
                for c in candidates
            )
        self.routed(record.tier, record.model, record.route_reason or "-", record.turn)

    def _render_panel(self) -> None:
        mode = "auto" if self.tier == "auto" else f"pinned: {self.tier}"
        if self.last == "-":
            self.show(f"mode {mode}\nAfter the first call: which tier answered it and why.")
            return
        lines = [f"mode {mode}", f"last {self.last}", f"why  {self.reason}"]
        if self.candidates:
            lines.append(f"weighed {self.candidates}")
        self.show("\n".join(lines))
