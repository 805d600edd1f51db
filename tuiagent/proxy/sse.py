"""Usage read off a Messages response as it passes through, without holding it up.

Only the events that carry money are decoded (message_start, message_delta, message_stop,
error); content deltas are kept as bytes and decoded only when the stream ends early, to
estimate the output that was billed before the cut.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from typing import Any

from tuiagent.llm.tokens import BadUsage, TokenUsage, api_miss_reason, estimate_tokens
from tuiagent.proxy.answer import content_of_events, content_of_message
from tuiagent.proxy.encoding import Decoder

_DECODED = (b"message_start", b"message_delta", b"message_stop", b"error")
_DATA_LINE = re.compile(rb"^data:(.*)$", re.MULTILINE)


class UsageScanner:
    """Fed the raw bytes of a response as they arrive (in its `encoding`, undone on the way:
    `Decoder`); says what the call billed. `streamed`: SSE or one JSON Message, as its
    content-type says; None where it says nothing: then as its first bytes show (`{`: JSON)."""

    def __init__(self, streamed: bool | None, encoding: str | None = None) -> None:
        self.streamed = streamed
        self.decoder = Decoder(encoding)
        self.usage: TokenUsage | None = None  # the last usage that could be read; None: none
        self.updates = 0  # usages read: message_start's, then message_delta's
        self.bad_usage: str | None = None  # a usage after `usage` that cannot be a bill
        self.model = ""  # the model the answer names
        self.completed = False  # message_stop seen, or a whole JSON message
        self.error: dict[str, Any] | None = None  # the error object of an `event: error`
        self.stop_reason: str | None = None
        self.message_id = ""
        self.diagnostics: dict[str, Any] | None = None
        self._content: list[dict[str, Any]] | None = None  # a whole Message's
        self._tail = b""
        self._deltas: list[bytes] = []
        self._decoded: list[Any] | None = None  # their data, once read
        self._body: list[bytes] = []
        self._started = False  # a message_start was read

    @property
    def unreadable(self) -> str | None:
        """Why the body could not be read on (its encoding), if it could not."""
        return self.decoder.unreadable

    def feed(self, chunk: bytes) -> None:
        chunk = self.decoder.feed(chunk)
        if self.streamed is None:
            chunk = chunk.lstrip()
            if not chunk:
                return
            self.streamed = not chunk.startswith(b"{")
        if not chunk:
            return
        if not self.streamed:
            self._body.append(chunk)
            if chunk.rstrip().endswith(b"}"):
                self._read_body()  # whole already? (a body sent without content-length)
            return
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        data = self._tail + chunk if self._tail else chunk
        end = data.rfind(b"\n\n")
        if end < 0:
            self._tail = data
            return
        complete, self._tail = data[:end], data[end + 2 :]
        if b"message_" not in complete and b"error" not in complete:
            # Content only (every event that carries usage or an error names itself with one
            # of those words): kept whole, read only if the stream is cut.
            self._deltas.append(complete)
            return
        for event in complete.split(b"\n\n"):
            self._event(event)

    def finish(self) -> None:
        """The response ended (whole or cut): read what is left."""
        if self.streamed:
            if self._tail.strip():
                self._event(self._tail)
            self._tail = b""
        elif not self.completed:
            self._read_body()

    def _read_body(self) -> None:
        try:
            message = json.loads(b"".join(self._body))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return  # a cut body: usage unknown
        if isinstance(message, dict) and message.get("type") == "message":
            self._usage(lambda: TokenUsage.from_api(message.get("usage")))
            self.model = str(message.get("model") or "")
            self.message_id = str(message.get("id", ""))
            self.stop_reason = message.get("stop_reason")
            self.diagnostics = message.get("diagnostics")
            self._content = content_of_message(message)
            self.completed = True
        elif isinstance(message, dict) and isinstance(message.get("error"), dict):
            self.error = message["error"]

    def _usage(self, read: Callable[[], TokenUsage]) -> None:
        if self.bad_usage is not None:
            return  # after nonsense, nothing more is believed
        try:
            usage = read()
        except BadUsage as exc:
            self.bad_usage = str(exc)
            return
        before = self.usage
        if before is not None and (
            usage.total_input_tokens < before.total_input_tokens
            or usage.output_tokens < before.output_tokens
        ):
            # Counts are cumulative (a compaction's passes are summed): one that went down
            # is not a bill. The larger one read before it stands, its output unknown.
            self.bad_usage = (
                f"usage went down ({before.total_input_tokens:,} input and "
                f"{before.output_tokens:,} output tokens, then {usage.total_input_tokens:,} "
                f"and {usage.output_tokens:,})"
            )
            return
        self.usage = usage
        self.updates += 1

    @property
    def miss_reason(self) -> str | None:
        return api_miss_reason(self.diagnostics)

    def answer(self) -> list[dict[str, Any]] | None:
        """The answer's content blocks as the client received them (None: none read)."""
        if not self.streamed:
            return self._content
        return content_of_events(e for e in self._content_events() if isinstance(e, dict))

    def _content_events(self) -> list[Any]:
        """The content events' data, decoded once the stream is over: in one `json.loads`
        where each data line is JSON (as the API sends them, an event a line), else event
        by event (then an event of several data lines is read as one, and one whose data is
        not JSON is skipped)."""
        if self._decoded is None:
            runs = b"\n\n".join(self._deltas)
            lines = _DATA_LINE.findall(runs)
            if len(lines) == runs.count(b"\n\n") + 1:  # a data line an event
                with contextlib.suppress(ValueError, RecursionError):
                    self._decoded = json.loads(b"[" + b",".join(lines) + b"]")
            if self._decoded is None:
                self._decoded = [_data(blob) for blob in runs.split(b"\n\n")]
        return self._decoded

    def output_streamed(self) -> int:
        """Tokens of the content that streamed before a cut (the local estimate)."""
        pieces: list[str] = []
        for data in self._content_events():
            delta = data.get("delta") if isinstance(data, dict) else None
            if isinstance(delta, dict):
                for key in ("text", "partial_json", "thinking"):
                    value = delta.get(key)
                    if isinstance(value, str):
                        pieces.append(value)
        return estimate_tokens("".join(pieces))

    def _event(self, blob: bytes) -> None:
        name = b""
        if blob.startswith(b"event:"):
            name = blob[6 : blob.find(b"\n") if b"\n" in blob else len(blob)].strip()
        if name in (b"content_block_delta", b"content_block_start"):
            self._deltas.append(blob)
            return
        if name and name not in _DECODED:
            return
        data = _data(blob)
        if not isinstance(data, dict):
            return
        kind = data.get("type")
        if kind == "message_start" and self._started:
            # One answer is one message: which of two starts the upstream bills is not
            # known, so none is believed (the call keeps its worst case).
            self.bad_usage = self.bad_usage or "second message_start"
            self.usage = None
        elif kind == "message_start" and isinstance(data.get("message"), dict):
            self._started = True
            message = data["message"]
            self._usage(lambda: TokenUsage.from_api(message.get("usage")))
            self.model = str(message.get("model") or "")
            self.message_id = str(message.get("id", ""))
            self.diagnostics = message.get("diagnostics") or self.diagnostics
        elif kind == "message_delta":
            self._usage(lambda: (self.usage or TokenUsage()).with_delta(data.get("usage")))
            delta = data.get("delta")
            if isinstance(delta, dict):
                self.stop_reason = delta.get("stop_reason") or self.stop_reason
            self.diagnostics = data.get("diagnostics") or self.diagnostics
        elif kind == "message_stop":
            self.completed = True
        elif kind in ("content_block_delta", "content_block_start"):
            self._deltas.append(blob)
        elif kind == "error" or name == b"error":
            error = data.get("error")
            self.error = error if isinstance(error, dict) else {"type": "stream_error"}


def _data(blob: bytes) -> Any:
    lines = [line[5:].lstrip() for line in blob.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    try:
        return json.loads(b"\n".join(lines))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
