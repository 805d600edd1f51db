"""The one seam between the proxy and the budget's worst-case arithmetic."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tuiagent.cost.budget import Reservation, plan_reservation
from tuiagent.cost.pricing import Pricer

MIN_USEFUL_TOKENS = 256


def fit_request(
    pricer: Pricer,
    model: str,
    request: dict[str, Any],
    input_tokens: int,
    token_source: str,
    remaining: Decimal,
) -> Reservation | None:
    """The request's worst case within `remaining`, its max_tokens lowered to fit; None
    when not even MIN_USEFUL_TOKENS of output fit."""
    return plan_reservation(
        pricer, model, request, input_tokens, token_source, remaining, MIN_USEFUL_TOKENS
    )
