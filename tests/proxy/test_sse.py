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


def _start(model: str, input_tokens: int) -> bytes:
    message = {"id": "m", "model": model, "usage": {"input_tokens": input_tokens, "output_tokens": 1}}  # fmt: skip
    return _event("message_start", {"type": "message_start", "message": message})


def _end(usage: dict[str, Any]) -> bytes:
    delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage}
    return _event("message_delta", delta) + _event("message_stop", {"type": "message_stop"})


def _scan(*events: bytes) -> UsageScanner:
    scanner = UsageScanner(True)
    scanner.feed(b"".join(events))
    scanner.finish()
    return scanner


def test_a_usage_that_goes_down_or_a_second_message_start_is_not_believed() -> None:
    """Counts are cumulative: a message_delta saying 1 input token after message_start said
    50,000 settled the call at 1 (and a second message_start, naming a cheaper model with 5
    input tokens, replaced the first). Neither can be a bill: the larger count read before
    stands, its output unknown; of two starts none is believed (the call's worst case)."""
    down = _scan(_start("claude-fable-5-2", 50_000), _end({"input_tokens": 1, "output_tokens": 10}))
    assert down.usage is not None and down.usage.total_input_tokens == 50_000
    assert down.bad_usage == "usage went down (50,000 input and 1 output tokens, then 1 and 10)"
    twice = _scan(_start("claude-fable-5-2", 50_000), _start("claude-sonnet-5-5", 5), _end({"output_tokens": 10}))  # fmt: skip
    assert twice.usage is None and twice.bad_usage == "second message_start"
    # A compaction's delta: its top level is the last pass, its iterations sum to more.
    passes = [{"input_tokens": 100, "output_tokens": 83, "cache_read_input_tokens": 55_096, "type": "compaction"}, {"input_tokens": 181, "output_tokens": 8, "type": "message"}]  # fmt: skip
    compacted = _scan(_start("claude-sonnet-4-6", 55_196), _end({"input_tokens": 181, "output_tokens": 8, "iterations": passes}))  # fmt: skip
    assert compacted.bad_usage is None and compacted.completed
    assert compacted.usage is not None and compacted.usage.total_input_tokens > 55_196
