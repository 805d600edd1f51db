"""A response's body as the meter reads it: its `Content-Encoding` undone as it arrives.

The proxy asks the upstream for `accept-encoding: identity` (server.py), but an upstream (a
gateway, a CDN) may compress its answer anyway. The client gets the bytes as they came,
their header with them; the meter reads them decoded: gzip and deflate (zlib, the standard
library), stacked as the header lists them. Any other encoding (br, zstd, a name not known),
a body that does not decode, or one that decodes past MAX_DECODED bytes is not read on: the
call keeps what was read before (its worst case where that was nothing), and its record
says why (`unreadable`).
"""

from __future__ import annotations

import zlib

MAX_DECODED = 256 << 20  # far above any answer (a 128K-token stream is ~20 MB of SSE)
_WBITS = {
    "gzip": zlib.MAX_WBITS | 16,
    "x-gzip": zlib.MAX_WBITS | 16,
    "deflate": zlib.MAX_WBITS,  # zlib-wrapped, as HTTP says; raw deflate is tried after
}


class Decoder:
    """Fed a body's bytes as they arrive; gives them back decoded (b"" once unreadable)."""

    def __init__(self, encoding: str | None) -> None:
        codings = [c.strip().lower() for c in (encoding or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        unknown = [c for c in codings if c not in _WBITS]
        self.unreadable: str | None = (
            f"the answer is {unknown[0]!r}-encoded, which the proxy cannot read"
            if unknown
            else None
        )
        self._stages = [] if unknown else [_Stage(c) for c in reversed(codings)]

    def feed(self, chunk: bytes) -> bytes:
        if self.unreadable is not None:
            return b""
        try:
            for stage in self._stages:
                chunk = stage.feed(chunk)
        except _Unreadable as exc:
            self.unreadable = str(exc)
            return b""
        return chunk


class _Unreadable(Exception):
    pass


class _Stage:
    """One encoding undone: a gzip body may hold several members, one after another."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self.wbits = _WBITS[coding]
        self.inflate = zlib.decompressobj(self.wbits)
        self.begun = False  # some output came: a deflate body is no longer tried as raw
        self.read = b""  # a deflate body's bytes while it may be raw, to read again as such
        self.decoded = 0

    @property
    def may_be_raw(self) -> bool:
        """A deflate body read as zlib's that gave no output yet: it may be raw deflate."""
        return self.coding == "deflate" and self.wbits > 0 and not self.begun

    def feed(self, data: bytes) -> bytes:
        out = []
        if self.may_be_raw:
            self.read += data
        while data:
            try:
                piece = self.inflate.decompress(data, MAX_DECODED - self.decoded + 1)
            except zlib.error:
                if self.may_be_raw:
                    self.wbits = -zlib.MAX_WBITS  # raw deflate, as some servers send it
                    self.inflate = zlib.decompressobj(self.wbits)
                    data, self.read = self.read, b""  # from its first byte
                    continue
                raise _Unreadable(
                    f"the answer is {self.coding}-encoded and does not decode"
                ) from None
            if piece and not self.begun:
                self.begun, self.read = True, b""
            self.decoded += len(piece)
            if self.decoded > MAX_DECODED:
                raise _Unreadable(f"the answer decodes past {MAX_DECODED >> 20} MB")
            out.append(piece)
            data = self.inflate.unconsumed_tail
            if self.inflate.eof:  # the next member (gzip), or what trails the stream
                data = self.inflate.unused_data + data
                self.inflate = zlib.decompressobj(self.wbits)
        return b"".join(out)
