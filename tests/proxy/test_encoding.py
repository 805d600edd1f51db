"""An answer the upstream compresses although the proxy asked for `identity`: read for its
bill as it arrives (tuiagent/proxy/encoding.py), the client getting the bytes as they came."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tuiagent.proxy import encoding
from tuiagent.proxy.encoding import Decoder
from tuiagent.proxy.sse import UsageScanner

STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"claude-sonnet-4-5",'
    b'"usage":{"input_tokens":25,"output_tokens":1}}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":7}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)  # fmt: skip


def _deflate(data: bytes, wbits: int) -> bytes:
    c = zlib.compressobj(wbits=wbits)
    return c.compress(data) + c.flush()


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@settings(max_examples=100, deadline=None)
@example(coding="deflate-raw", cuts=[1])  # its first byte alone: read as zlib's, then lost
@given(
    coding=st.sampled_from(["gzip", "x-gzip", "deflate", "deflate-raw", "gzip, gzip"]),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=12),
)
def test_a_compressed_answer_cut_anywhere_is_read_whole(coding: str, cuts: list[int]) -> None:
    body = {
        "gzip": gzip.compress(STREAM),
        "x-gzip": gzip.compress(STREAM),
        "deflate": _deflate(STREAM, zlib.MAX_WBITS),
        "deflate-raw": _deflate(STREAM, -zlib.MAX_WBITS),  # some servers send it raw
        "gzip, gzip": gzip.compress(gzip.compress(STREAM)),
    }[coding]
    scanner = UsageScanner(True, coding.removesuffix("-raw"))
    for chunk in _cut(body, cuts):
        scanner.feed(chunk)
    scanner.finish()
    assert scanner.unreadable is None and scanner.completed
    assert scanner.usage is not None and scanner.usage.output_tokens == 7


def test_gzip_of_several_members_is_read_through() -> None:
    half = len(STREAM) // 2
    decoder = Decoder("gzip")
    decoded = decoder.feed(gzip.compress(STREAM[:half]) + gzip.compress(STREAM[half:]))
    assert decoded == STREAM and decoder.unreadable is None


def test_what_cannot_be_read_is_said_and_not_read_on() -> None:
    for name, body, said in [
        ("br", STREAM, "'br'-encoded, which the proxy cannot read"),
        ("gzip, zstd", STREAM, "'zstd'-encoded"),
        ("gzip", b"not gzip at all", "gzip-encoded and does not decode"),
    ]:
        scanner = UsageScanner(True, name)
        scanner.feed(body)
        scanner.finish()
        assert scanner.usage is None and scanner.unreadable is not None
        assert said in scanner.unreadable
    assert Decoder("identity").feed(b"x") == b"x" and Decoder(None).feed(b"x") == b"x"


def test_a_body_that_decodes_past_the_bound_is_not_read_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A few KB of gzip can decode to gigabytes: the meter stops at MAX_DECODED (the call
    keeps its worst case) instead of holding them all."""
    monkeypatch.setattr(encoding, "MAX_DECODED", 1 << 20)
    decoder = Decoder("gzip")
    bomb = gzip.compress(b"\0" * (encoding.MAX_DECODED * 3))
    assert len(bomb) < encoding.MAX_DECODED // 200
    out = sum(len(decoder.feed(bomb[i : i + 65536])) for i in range(0, len(bomb), 65536))
    assert decoder.unreadable is not None and "decodes past" in decoder.unreadable
    assert out <= encoding.MAX_DECODED
