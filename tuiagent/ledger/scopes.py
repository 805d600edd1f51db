"""What a call is, for the budgets it falls under: its session, sub-agent, key, user, client,
model and tier; and the budgets themselves as the config states them (`[[budgets]]`).

A budget applies to a call when the call has a value for the budget's scope (every call for
`global`), and that value is the budget's `match` when it has one. Each value has its own
spending: a `session` budget of $0.20 is $0.20 for each session.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tuiagent.ledger.windows import Window

SCOPES = ("global", "session", "agent", "key", "user", "client", "model", "tier")
MAX_VALUE_CHARS = 128  # values come from clients' headers: long ones are cut, then hashed
_SAFE = re.compile(r"[^\x21-\x7e]")


@dataclass(frozen=True)
class Scopes:
    """A call's values per scope; None where it has none (then budgets of that scope do not
    apply to it). `simulated` calls (the offline model) are counted apart: their dollars
    are what the real model would cost, and never spend a real budget. `run` names the
    run that made the call, for reports (not a scope a budget can take)."""

    session: str | None = None
    agent: str | None = None
    key: str | None = None
    user: str | None = None
    client: str | None = None
    model: str | None = None
    tier: str | None = None
    simulated: bool = False
    run: str | None = None
    parent_agent: str | None = None  # a sub-agent's parent, for reports (not a scope)

    def value(self, scope: str) -> str | None:
        if scope == "global":
            return ""
        found: str | None = getattr(self, scope)
        return found

    def merged(self, other: Scopes | None) -> Scopes:
        """These scopes with `other`'s values where it has them."""
        if other is None:
            return self
        given = {
            f.name: getattr(other, f.name)
            for f in dataclasses.fields(other)
            if getattr(other, f.name) is not None and f.name != "simulated"
        }
        return dataclasses.replace(self, simulated=self.simulated or other.simulated, **given)


def clean_value(value: object) -> str | None:
    """A scope value as it is stored: printable ASCII, at most MAX_VALUE_CHARS (a longer or
    stranger one is replaced by a hash of itself, so two values never merge)."""
    if value is None:
        return None
    text = str(value)
    if not text:
        return None
    if len(text) <= MAX_VALUE_CHARS and not _SAFE.search(text):
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{_SAFE.sub('', text)[:48]}~{digest}"


def key_id(api_key: str | None) -> str | None:
    """The key scope's value: a hash of the client's key, never the key."""
    if not api_key:
        return None
    return "k-" + hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def proxy_scopes(headers: Mapping[str, str], body: Mapping[str, Any], client: str | None) -> Scopes:
    """A proxied request's scopes: the coding agent's session (`X-Claude-Code-Session-Id`,
    or the `session_id` inside `metadata.user_id`, a JSON string it sends) and sub-agent
    (`x-claude-code-agent-id`, its parent `x-claude-code-parent-agent-id`); the key as a hash; the user from `metadata.user_id` (its
    `account_uuid` when it is the coding agent's JSON); the client; the model."""
    lower = {k.lower(): v for k, v in headers.items()}
    metadata = body.get("metadata")
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    from_user: dict[str, Any] = {}
    if isinstance(user_id, str) and user_id.startswith("{"):
        try:
            parsed = json.loads(user_id)
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, dict):
            from_user = parsed
    session = lower.get("x-claude-code-session-id") or from_user.get("session_id")
    user = (from_user.get("account_uuid") or from_user.get("device_id")) if from_user else user_id
    token = lower.get("x-api-key") or lower.get("authorization", "").removeprefix("Bearer ")
    model = body.get("model")
    return Scopes(
        session=clean_value(session if isinstance(session, str) else None),
        agent=clean_value(lower.get("x-claude-code-agent-id")),
        parent_agent=clean_value(lower.get("x-claude-code-parent-agent-id")),
        key=key_id(token.strip() or None),
        user=clean_value(user if isinstance(user, str) else None),
        client=clean_value(client),
        model=clean_value(model if isinstance(model, str) else None),
    )


@dataclass(frozen=True)
class BudgetSpec:
    """One `[[budgets]]` table: at most `max_cost_usd` per `window`, for each value of
    `scope` (or only the value `match`)."""

    scope: str
    window: Window
    max_cost_usd: Decimal
    match: str | None = None
    name: str = ""

    @property
    def title(self) -> str:
        """How messages name it: its `name`, else `global day`, `session run`,
        `model 5h claude-opus-4-1`."""
        if self.name:
            return self.name
        parts = [self.scope, self.window.label]
        if self.match is not None:
            parts.append(self.match)
        return " ".join(parts)

    def applies(self, scopes: Scopes) -> str | None:
        """The value of this budget's scope for a call it applies to; None if it does not."""
        value = scopes.value(self.scope)
        if value is None or (self.match is not None and value != self.match):
            return None
        return value

    def counter_key(self, value: str, simulated: bool) -> str:
        """The counter this budget's spending is kept in, shared by every budget of the same
        scope and value (their windows are buckets under it)."""
        return f"{'sim:' if simulated else ''}{self.scope}={value}"

    def to_json(self) -> dict[str, Any]:
        """As the ledger keeps it, so that `tuiagent budgets` lists the budgets every
        process on the ledger holds against, from any machine."""
        w = self.window
        return {
            "scope": self.scope,
            "window": w.label,
            "timezone": w.tz,
            "max_cost_usd": str(self.max_cost_usd),
            "match": self.match,
            "name": self.name,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BudgetSpec:
        window = Window.parse(str(data["window"]), str(data.get("timezone") or "UTC"))
        return cls(
            str(data["scope"]),
            window,
            Decimal(str(data["max_cost_usd"])),
            data.get("match"),
            str(data.get("name") or ""),
        )
