"""How big a request is, without a round trip where one cannot change the outcome.

A conversation re-sends its history with every call. The previous call of the same
conversation billed its input exactly, and its output is the answer the history now ends
with: together, the exact size of the unchanged prefix. Only what was added since (the
answer as re-sent, the new messages) is estimated, with the margin.

A conversation is recognised by what it is made of, not by who sends it: its frame (model,
tools, system) and its messages, each hashed with the cache markers aside (they move every
call). So the proxy, which sees the calls of many clients and sessions interleaved, finds
the call a request continues as the agent finds its own previous call.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuiagent.llm.tokens import PER_MESSAGE_OVERHEAD, estimate_request_tokens
from tuiagent.llm.usage import TokenUsage


@dataclass(frozen=True)
class Size:
    """A request's input tokens as reserved, and where the figure came from:
    count_tokens | estimate (the local one with its margin) | prefix+estimate."""

    tokens: int
    source: str  # count_tokens | estimate | prefix+estimate


def _unmarked(blocks: Any) -> Any:
    """Blocks as the API reads them, cache markers aside."""
    if isinstance(blocks, str):
        return [{"type": "text", "text": blocks}] if blocks else []
    if not isinstance(blocks, list):
        return blocks
    return [
        {k: v for k, v in b.items() if k != "cache_control"} if isinstance(b, dict) else b
        for b in blocks
    ]


def _hash(value: Any) -> bytes:
    data = json.dumps(value, sort_keys=True, default=str)
    return hashlib.blake2b(data.encode(), digest_size=16).digest()


def _chain(request: Mapping[str, Any]) -> list[bytes]:
    """chain[i]: the digest of the frame and the first i messages."""
    frame = [
        request.get("model"),
        _unmarked(request.get("tools")),
        _unmarked(request.get("system")),
    ]
    out = [_hash(frame)]
    for message in request.get("messages") or []:
        m = message if isinstance(message, Mapping) else {}
        step = _hash([m.get("role"), _unmarked(m.get("content"))])
        out.append(hashlib.blake2b(out[-1] + step, digest_size=16).digest())
    return out


@dataclass(frozen=True)
class _Billed:
    messages: int  # how many messages the call sent
    tokens: int  # its billed input plus its output: the prefix that follows it, exactly
    output: int


class Prefixes:
    """The last calls of each conversation, by what they sent (at most `size` of them)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._book: OrderedDict[bytes, _Billed] = OrderedDict()

    def note(self, request: Mapping[str, Any], usage: TokenUsage) -> None:
        """A call was billed `usage` for `request`: the next call of its conversation starts
        from it."""
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            return
        key = _chain(request)[-1]
        self._book[key] = _Billed(
            len(messages), usage.total_input_tokens + usage.output_tokens, usage.output_tokens
        )
        self._book.move_to_end(key)
        while len(self._book) > self.size:
            self._book.popitem(last=False)

    def known(self, request: Mapping[str, Any]) -> tuple[int, int] | None:
        """(exact tokens of the prefix, the estimate of what follows it) when `request`
        continues a call noted here; None when its prefix changed (another model, system or
        tools, the history edited) or no call of it was seen."""
        messages = request.get("messages")
        if not isinstance(messages, list) or len(messages) < 2:
            return None
        chain = _chain(request)
        for n in range(len(messages) - 1, 0, -1):
            billed = self._book.get(chain[n])
            if billed is None or billed.messages != n:
                continue
            self._book.move_to_end(chain[n])
            return self._split(billed, messages[n:])
        return None

    @staticmethod
    def _split(billed: _Billed, new: list[Any]) -> tuple[int, int]:
        """The exact part and the estimated part of what a billed call is followed by. Its
        answer, re-sent as the next message, is its output tokens (unless the re-sent answer
        estimates larger: then it was changed, and it is estimated with the rest)."""
        first = new[0] if isinstance(new[0], Mapping) else {}
        if first.get("role") == "assistant":
            answer = estimate_request_tokens({"messages": [first]})
            if answer <= billed.output:
                new = new[1:]
                return billed.tokens, estimate_request_tokens(
                    {"messages": new}
                ) + PER_MESSAGE_OVERHEAD
        exact = billed.tokens - billed.output
        return exact, estimate_request_tokens({"messages": new}) + PER_MESSAGE_OVERHEAD
