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
# Every remembered secret appears as it is inside a repr (no quote or escape in it), so the
# precheck in redact_data may look at one repr instead of walking the value.
_repr_safe = True


def remember(secret: str | None) -> None:
    """Redact this value (and its stripped form) from now on."""
    global _pattern, _repr_safe
    if not secret:
        return
    added = {v for v in (secret, secret.strip()) if len(v) >= _MIN_SECRET_LEN} - _known
    if not added:
        return
    _known.update(added)
    _repr_safe = all(repr(v)[1:-1] == v for v in _known)
    # Longest first, so a value that contains another is removed whole.
    alternatives = [re.escape(v) for v in sorted(_known, key=len, reverse=True)]
    _pattern = re.compile("|".join([*alternatives, _KEY_SHAPE.pattern]))


def forget_all() -> None:
    """Tests only: start again with no remembered secrets."""
    global _pattern, _repr_safe
    _known.clear()
    _pattern = _KEY_SHAPE
    _repr_safe = True


def redact(text: str) -> str:
    """`text` with every secret replaced by [REDACTED]."""
    if "sk-ant-" not in text and not _known:
        return text  # the common case: nothing to look for
    return _pattern.sub(REDACTED, text)


def redact_data(value: Any) -> Any:
    """A JSON-like value (dicts, lists, strings) with every string redacted; the value itself
    when it holds nothing to redact (the common case: one repr searched, nothing copied)."""
    if isinstance(value, dict | list | tuple) and _repr_safe:
        # A string holding a secret shows it verbatim in the container's repr.
        text = repr(value)
        if "sk-ant-" not in text and not (_known and _pattern.search(text)):
            return value
    return _redacted(value)


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {_redacted(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_redacted(v) for v in value)
    return value
