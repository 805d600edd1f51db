"""Replay of proxied traffic (issue 26, item 5): `tuiagent replay RUN --all --tier fast
--judge` on a session that went through `tuiagent proxy --offline`, streamed or not; each
call's original answer kept in the transcript, so the judge compares the right pair; a
request field the SDK takes as its own keyword (`stream`) or does not model yet never
breaks the replay."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from tests.offline.test_serve import LIST_TOOL, command, sdk
from tests.support.cli import run_cli
from tuiagent.llm.client import CallFailed, CallResult, make_client, stream_message
from tuiagent.offline import OfflineModel
from tuiagent.proxy.answer import content_of_events
from tuiagent.proxy.sse import UsageScanner

MODEL = "claude-sonnet-4-5"  # the balanced tier's kind of model: `--tier fast` is cheaper


def _stream(client: anthropic.Anthropic, **kw: Any) -> anthropic.types.Message:
    with client.messages.stream(model=MODEL, max_tokens=300, **kw) as stream:
        return stream.get_final_message()


def _session(url: str, *, streamed: bool) -> list[anthropic.types.Message]:
    """Six calls of one conversation, with a tool loop in it, as a client makes them."""
    client = sdk(url)
    headers = {"X-Claude-Code-Session-Id": "s-replay"}
    messages: list[anthropic.types.MessageParam] = []
    answers = []
    for prompt in (
        "list the files here",
        "what is a prompt cache?",
        "list the files in docs",
        "bye",
    ):
        messages.append({"role": "user", "content": prompt})
        while True:
            kw: dict[str, Any] = dict(
                messages=messages, tools=[LIST_TOOL], system="Be brief.", extra_headers=headers
            )
            answer = (
                _stream(client, **kw)
                if streamed
                else client.messages.create(model=MODEL, max_tokens=300, **kw)
            )
            answers.append(answer)
            messages.append({"role": "assistant", "content": answer.content})
            calls = [b for b in answer.content if b.type == "tool_use"]
            if not calls:
                break
            messages.append(
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": c.id, "content": "file 9 a.txt"}
                        for c in calls
                    ],
                }
            )
    return answers


def _proxied(tmp_path: Path, *, streamed: bool) -> tuple[str, list[anthropic.types.Message]]:
    args = ("proxy", "--offline", "--no-ui", "--port", "0", "--log-dir", str(tmp_path))
    with command(*args) as (_proc, url, _second):
        answers = _session(url, streamed=streamed)
    (log,) = tmp_path.glob("*.jsonl")
    return log.stem, answers


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "whole"])
def test_replay_all_of_a_proxied_session_judges_every_call_same(
    tmp_path: Path, streamed: bool
) -> None:
    run_id, answers = _proxied(tmp_path, streamed=streamed)
    assert len(answers) == 6 and answers[0].stop_reason == "tool_use"
    result = run_cli(
        "replay", run_id, "--all", "--tier", "fast", "--judge", "--offline", "--yes", "--json",
        "--log-dir", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["verdicts"] == {"same": 6, "acceptable": 0, "worse": 0}, out["turns"]
    assert [t["turn"] for t in out["turns"]] == [1, 2, 3, 4, 5, 6]
    assert all(t["error"] is None and t["replay_model"] != MODEL for t in out["turns"])
    reasons = [t["reason"] for t in out["turns"]]
    assert sum("the same tool calls" in r for r in reasons) == 2  # the tool loops
    assert sum("word overlap" in r for r in reasons) == 4  # answers: judged
    # Every replayed call and judge call answered at the first attempt: nothing failed,
    # nothing retried, nothing billed for a call that did not answer.
    replays = [p for p in tmp_path.glob("*.jsonl") if p.stem != run_id]
    (experiment,) = replays
    records = [json.loads(x) for x in experiment.read_text().splitlines()]
    assert not [r for r in records if r["type"] == "attempt"]
    assert sum(r["type"] == "turn" for r in records) == 6 + 4


def test_on_an_80_column_terminal_each_verdict_shows_whole(tmp_path: Path) -> None:
    """One run replayed: the run is the title's, so the verdict and the reason have room
    (seen by hand: at 80 columns every verdict was cut to `…`)."""
    from tests.report.test_report_defects import on_a_terminal

    run_id, _ = _proxied(tmp_path, streamed=True)
    text = on_a_terminal(
        "replay", run_id, "--all", "--tier", "fast", "--judge", "--offline", "--yes",
        "--log-dir", str(tmp_path), columns=80,
    )  # fmt: skip
    rows = [line.split() for line in text.splitlines() if line[:6].strip().isdigit()]
    assert [r[:2] for r in rows] == [[str(n), "same"] for n in range(1, 7)], text
    assert all(len(line) <= 80 for line in text.splitlines()) and "␛" not in text


def test_the_transcript_keeps_each_proxied_answer_as_the_client_got_it(tmp_path: Path) -> None:
    run_id, answers = _proxied(tmp_path, streamed=True)
    turn = 2  # the tool loop's answer (turn 1 called the tool)
    result = run_cli(
        "replay", run_id, "--turn", str(turn), "--tier", "fast", "--offline",
        "--log-dir", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "not kept" not in result.stdout and "failed" not in result.stdout
    (transcript,) = (tmp_path / "transcripts").glob(f"{run_id}*")
    kept = [json.loads(x) for x in transcript.read_text().splitlines()]
    requests = [k for k in kept if k.get("kind") == "request"]
    assert len(requests) == 6
    for rec, answer in zip(requests, answers, strict=True):
        assert rec["answer"] == [
            b.model_dump(exclude_none=True, exclude={"citations"}) for b in answer.content
        ]


def test_an_answer_is_rebuilt_from_its_stream_events() -> None:
    events = [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hm"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hel"}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "lo"}},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "t1", "name": "ls", "input": {}}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"pa'}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": 'th": "."}'}},
        {"type": "content_block_delta", "index": 7, "delta": {"type": "text_delta", "text": "orphan"}},
    ]  # fmt: skip
    assert content_of_events(events) == [
        {"type": "thinking", "thinking": "hm", "signature": "sig"},
        {"type": "text", "text": "Hello"},
        {"type": "tool_use", "id": "t1", "name": "ls", "input": {"path": "."}},
    ]
    assert content_of_events([]) is None


def test_the_scanner_keeps_block_starts_that_share_a_chunk_with_message_events() -> None:
    def sse(data: dict[str, Any]) -> bytes:
        return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()

    start = {"type": "message_start", "message": {"id": "m", "model": MODEL, "usage": {"input_tokens": 3, "output_tokens": 1}}}  # fmt: skip
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}  # fmt: skip
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}  # fmt: skip
    scanner = UsageScanner(True)
    scanner.feed(sse(start) + sse(block))  # one chunk: the start is read with message_start
    scanner.feed(sse(delta)[:20])
    scanner.feed(sse(delta)[20:] + sse({"type": "message_stop"}))
    scanner.finish()
    assert scanner.answer() == [{"type": "text", "text": "hi"}]


class _Seen(httpx2.AsyncBaseTransport):
    """The offline model, keeping each request body it is sent."""

    def __init__(self) -> None:
        self.model = OfflineModel()
        self.bodies: list[dict[str, Any]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.bodies.append(json.loads(await request.aread()))
        return await self.model.handle_async_request(request)


async def test_a_logged_request_with_stream_and_an_unmodelled_field_is_sent_as_it_was() -> None:
    seen = _Seen()
    request = {
        "model": MODEL,
        "max_tokens": 300,
        "stream": True,  # as a proxied client sent it
        "messages": [{"role": "user", "content": "hello"}],
    }
    items = [item async for item in stream_message(make_client(offline_transport=seen), request)]
    assert isinstance(items[-1], CallResult) and items[-1].content
    # A field the SDK does not model goes as it is: the server (here the offline model, as
    # strict as the API) is the one to judge it, not a TypeError before sending.
    request["a_field_the_sdk_has_not_modelled"] = {"on": True}
    with pytest.raises(CallFailed, match="a_field_the_sdk_has_not_modelled: Extra inputs"):
        async for _ in stream_message(make_client(offline_transport=seen), request):
            pass
    _, body = seen.bodies
    assert body["stream"] is True
    assert body["a_field_the_sdk_has_not_modelled"] == {"on": True}
    assert "extra_body" not in body
