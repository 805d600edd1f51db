"""Each model's context window: the most input tokens one request may hold.

The window comes from genai-prices' model data (`ModelInfo.context_window`), the same data
that prices every call: 1,000,000 tokens for the 5.x models and Opus 4.6+, Sonnet 4.6;
200,000 for the older ones. A model it does not know (a gateway's, a hand-priced one) gets
200,000, the window Anthropic documents as the standard one for Claude models
(docs.anthropic.com, "Context windows"), unless config `context_window` says less.
"""

from __future__ import annotations

from functools import lru_cache

from genai_prices import data_snapshot

DEFAULT_CONTEXT_WINDOW = 200_000


def context_window(model: str, at_most: int | None = None) -> int:
    """The model's window in tokens, from genai-prices, else DEFAULT_CONTEXT_WINDOW; no
    more than `at_most` (config `context_window`) when given."""
    window = _known_window(model)
    return window if at_most is None else min(window, at_most)


@lru_cache(maxsize=64)
def _known_window(model: str) -> int:
    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(model, None, "anthropic", None)
    except LookupError:
        return DEFAULT_CONTEXT_WINDOW
    return info.context_window or DEFAULT_CONTEXT_WINDOW


def prompt_too_long(tokens: int, window: int) -> str:
    """The API's own message for a request over the window (a 400 invalid_request_error)."""
    return f"prompt is too long: {tokens} tokens > {window} maximum"
