"""The answer a stream builds (for the transcript) and the output it estimates after a cut
are read from its content events in one `json.loads` when each event is one data line;
whatever the events and however the stream is cut into chunks, that reads what reading
them one by one reads."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tuiagent.llm.tokens import estimate_tokens
from tuiagent.proxy.answer import content_of_events
from tuiagent.proxy.sse import UsageScanner, _data

EXTRA = b'data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x"}}\n'  # fmt: skip
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], list[bytes]]:
    """A stream's bytes (message_start, blocks of text, thinking and tool input, a few
    malformed events among them), and its content events one by one."""
    events = [_event("message_start", {"type": "message_start", "message": {"id": "m", "model": "claude-sonnet-4-5", "usage": {"input_tokens": 3, "output_tokens": 1}}})]  # fmt: skip
    content = []
    for index in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["text", "thinking", "tool_use"]))
        start = {"type": kind, kind: ""} if kind != "tool_use" else {"type": kind, "id": "t", "name": "f", "input": {}}  # fmt: skip
        content.append(_event("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}))  # fmt: skip
        for piece in draw(st.lists(TEXT, max_size=6)):
            delta = {"type": "input_json_delta", "partial_json": piece} if kind == "tool_use" else {"type": f"{kind}_delta", kind: piece}  # fmt: skip
            content.append(_event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))  # fmt: skip
            if draw(st.integers(0, 9)) == 0:  # hostile: a second data line, or no JSON
                bad = draw(st.sampled_from([b'data: {"type": "ping"}\n', EXTRA, b"data: {oops\n", b": comment\n"]))  # fmt: skip
                content[-1] = content[-1][:-1] + bad + b"\n"
        content.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))  # fmt: skip
    events += content
    raw = b"".join(events)
    cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    return chunks, [blob for e in content for blob in e.split(b"\n\n") if blob]


@settings(max_examples=300, deadline=None)
@given(streams())
def test_read_at_once_is_read_one_by_one(stream: tuple[list[bytes], list[bytes]]) -> None:
    chunks, blobs = stream
    scanner = UsageScanner(True)
    for chunk in chunks:  # events split across chunks anywhere
        scanner.feed(chunk)
    scanner.finish()
    one_by_one = [d for d in (_data(b) for b in blobs) if isinstance(d, dict)]
    assert scanner.answer() == content_of_events(one_by_one)
    pieces = [
        d["delta"].get(k, "")
        for d in one_by_one
        if d.get("type") == "content_block_delta"
        for k in ("text", "partial_json", "thinking")
    ]
    assert scanner.output_streamed() == estimate_tokens("".join(pieces))
