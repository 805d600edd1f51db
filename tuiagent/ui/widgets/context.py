"""The context meter: how full the model's window is, and what the history costs."""

from __future__ import annotations

from decimal import Decimal

from tuiagent.ui.format import money


def meter_text(tokens: int, window: int, input_cost: Decimal | None) -> str:
    """`context 12,345 / 1,000,000 tok (1%) · input $0.0012/call`; the cost is the last
    call's input (history read from the cache and written to it), None after an edit."""
    share = tokens / window if window else 0.0
    text = f"context {tokens:,} / {window:,} tok ({share:.0%})"
    if input_cost is not None:
        text += f" · history {money(input_cost, 5)}/call"
    return text
