"""The one redaction filter: no API key reaches a log, a transcript, the screen or the model.

Every writer a user or the model can read passes its text through `redact`: the run log and
the transcript (each line), the CLI's stdout and stderr, the agent's events (notices, halts,
records, answer text), failed-call messages, and tool output before it goes to the model.
It removes the secrets this process was given (`remember`: the key's exact value and its
whitespace-stripped form) and anything shaped like an Anthropic key (`sk-ant-...`).
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[REDACTED]"

# Anthropic keys (`sk-ant-api03-...`, `sk-ant-admin01-...`): base64url after the prefix.
_KEY_SHAPE = re.compile(r"sk-ant-[A-Za-z0-9_\-]+")
# Shorter values are not keys (the API refuses them); redacting them would mangle text.
_MIN_SECRET_LEN = 8

_known: set[str] = set()
_pattern: re.Pattern[str] = _KEY_SHAPE


def remember(secret: str | None) -> None:
    """Redact this value (and its stripped form) from now on."""
    global _pattern
    if not secret:
        return
    added = {v for v in (secret, secret.strip()) if len(v) >= _MIN_SECRET_LEN} - _known
    if not added:
        return
    _known.update(added)
    # Longest first, so a value that contains another is removed whole.
    alternatives = [re.escape(v) for v in sorted(_known, key=len, reverse=True)]
    _pattern = re.compile("|".join([*alternatives, _KEY_SHAPE.pattern]))


def forget_all() -> None:
    """Tests only: start again with no remembered secrets."""
    global _pattern
    _known.clear()
    _pattern = _KEY_SHAPE


def redact(text: str) -> str:
    """`text` with every secret replaced by [REDACTED]."""
    if "sk-ant-" not in text and not _known:
        return text  # the common case: nothing to look for
    return _pattern.sub(REDACTED, text)


def redact_data(value: Any) -> Any:
    """A JSON-like value (dicts, lists, strings) with every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_data(k): redact_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_data(v) for v in value]
    if isinstance(value, tuple):
        return tuple(redact_data(v) for v in value)
    return value
