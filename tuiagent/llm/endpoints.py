"""Which endpoint a request is for, read off its normalised path.

A client may spell one endpoint many ways (`//v1/messages`, `/v1/./messages`,
`/v1/x/../messages`, `/v1/%6Dessages`, `/v1/messages/`): an HTTP client or the upstream's
front end may normalise any of them into the billable endpoint. So the route is chosen on
the normalised path, and that path, not the client's spelling, is what goes upstream: what
is metered is what is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import quote, unquote_to_bytes

# The API's own limit on a request body (a larger one gets its 413 `request_too_large`).
MAX_BODY_BYTES = 32 * 1024 * 1024


class Endpoint(Enum):
    MESSAGES = "messages"  # metered
    COUNT_TOKENS = "count_tokens"  # free: passed through
    BATCHES = "batches"  # POST creates a batch (metered); GET lists them
    BATCH = "batch"  # GET retrieves, DELETE deletes one
    BATCH_RESULTS = "batch_results"  # GET: each result settles its request's hold
    BATCH_CANCEL = "batch_cancel"  # POST: cancels (bills nothing)
    MODELS = "models"  # GET only
    OTHER = "other"  # GET/HEAD pass; anything else is refused unless configured unbilled


_ID = r"[A-Za-z0-9_\-]+"
_ROUTES: list[tuple[re.Pattern[str], Endpoint]] = [
    (re.compile(r"/v1/messages"), Endpoint.MESSAGES),
    (re.compile(r"/v1/messages/count_tokens"), Endpoint.COUNT_TOKENS),
    (re.compile(r"/v1/messages/batches"), Endpoint.BATCHES),
    (re.compile(rf"/v1/messages/batches/{_ID}"), Endpoint.BATCH),
    (re.compile(rf"/v1/messages/batches/{_ID}/results"), Endpoint.BATCH_RESULTS),
    (re.compile(rf"/v1/messages/batches/{_ID}/cancel"), Endpoint.BATCH_CANCEL),
    (re.compile(rf"/v1/models(/{_ID})?"), Endpoint.MODELS),
]
# Endpoints a POST may reach without a hold: they bill nothing.
UNBILLED_POSTS = frozenset({Endpoint.COUNT_TOKENS, Endpoint.BATCH_CANCEL})


class BadPath(ValueError):
    """A path that cannot be read as one exact path (bad percent-encoding, not UTF-8)."""


def normalise(raw_path: bytes) -> str:
    """The path as a server resolving it would: percent-decoded once (as UTF-8), empty and
    `.` segments dropped, `..` going up (never above the root), no trailing slash."""
    decoded = unquote_to_bytes(raw_path)
    if re.search(rb"%(?![0-9A-Fa-f]{2})", raw_path):
        raise BadPath("a `%` that is not percent-encoding")
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise BadPath("percent-encoding that is not UTF-8") from None
    if any(ord(c) < 0x20 or c == "\x7f" for c in text):
        raise BadPath("a control character")
    segments: list[str] = []
    for segment in text.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments)


def endpoint(path: str) -> Endpoint:
    """The endpoint of a normalised path."""
    for pattern, found in _ROUTES:
        if pattern.fullmatch(path):
            return found
    return Endpoint.OTHER


def quoted(path: str) -> str:
    """A normalised path as it goes upstream (percent-encoded where it must be)."""
    return quote(path, safe="/:@!$&'()*+,;=-._~")


@dataclass(frozen=True)
class Unbilled:
    """The paths a config lists as billing nothing: a POST (or PUT, PATCH, DELETE) to one
    of them passes through unmetered. An entry ending in `/*` covers the paths under it."""

    paths: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    @classmethod
    def of(cls, entries: tuple[str, ...] | list[str]) -> Unbilled:
        exact = {e for e in entries if not e.endswith("/*")}
        prefixes = tuple(e[:-1] for e in entries if e.endswith("/*"))
        return cls(frozenset(exact), prefixes)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and (
            path in self.paths or any(path.startswith(p) for p in self.prefixes)
        )


def unbilled_entry_error(entry: str) -> str | None:
    """Why a configured unbilled path cannot be one, or None."""
    if not entry.startswith("/"):
        return "must start with `/`"
    bare = entry[:-2] if entry.endswith("/*") else entry
    try:
        normal = normalise(bare.encode())
    except BadPath as exc:
        return f"has {exc}"
    if normal != (bare or "/"):
        return f"must be written as the path it is: {normal}"
    if entry.endswith("/*"):
        # A prefix that covers a billable endpoint would let it through unmetered.
        for probe in ("/v1/messages", "/v1/messages/batches"):
            if (probe + "/").startswith(bare + "/"):
                return f"covers {probe}, which is billed"
    elif endpoint(normal) in (Endpoint.MESSAGES, Endpoint.BATCHES):
        return "is billed: the proxy meters it"
    return None
