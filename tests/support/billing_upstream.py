"""A Messages API on 127.0.0.1 that keeps its own books, and misbehaves as asked.

Unlike the offline model (tests/support/loopback.py), this one reports where and how it ran
(`usage.inference_geo`, `usage.speed`) and bills by the published modifiers, so a test can
hold the proxy's records against what the upstream billed: per request it keeps a `Bill`
(what it billed, and what the request allowed), keyed by the `request-id` it answered with.

How each /v1/messages request is answered is its `behaviour`, taken in arrival order from
`behaviours` (then "honest"); how each count_tokens request is answered, from `counts`.
It speaks just enough HTTP/1.1 for httpx: one request per connection, the body ended by
closing the connection, so it can cut a stream anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import zlib
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tuiagent.cost.pricing import Modifiers, Pricer
from tuiagent.llm.tokens import TokenUsage, estimate_request_tokens

BEHAVIOURS = (
    "honest",
    "greedy",  # the whole max_tokens
    "swapped",  # message_start names (and bills as) a dearer model
    "swapped_late",  # swapped, its body sent LATE_S after its head (a client may leave between)
    "slow",  # honest, events 20 ms apart: a client may leave mid-stream (all of it is billed)
    "gated",  # honest, but the stream waits after message_start until `gate` is set
    "cut",  # message_start and some text, then the connection closes (whole output billed)
    "stall",  # message_start, then nothing until the client leaves (whole output billed)
    "bad_usage",  # message_delta's output_tokens is nonsense
    "over_max",  # bills output beyond max_tokens
    "fast_fallback",  # a fast request runs (and bills) at standard speed
    "workspace_us",  # a request without inference_geo runs (and bills) in the US
    "no_answer",  # reads the request, hangs up without a word (may have billed it all)
    "overloaded",  # 529 before anything: bills nothing
)
LATE_S = 0.3  # swapped_late: between its head and its body
COUNTS = ("honest", "low", "zero", "negative", "missing", "string")
DEARER = {
    "claude-haiku-5-5": "claude-sonnet-5-5",
    "claude-sonnet-5-5": "claude-fable-5-2",
    "claude-opus-5-5": "claude-fable-5-2",
}
HONEST_OUTPUT = 40


@dataclass(frozen=True)
class Bill:
    """One request as the upstream saw it and billed it."""

    request_id: str | None  # the request-id it answered with; None: it sent no answer
    behaviour: str
    model: str  # asked
    max_tokens: int  # as it arrived
    asked: Modifiers  # the request's own (a workspace default where it set none)
    true_input: int
    billed_model: str
    billed_modifiers: Modifiers
    usage: TokenUsage  # billed

    def billed(self, pricer: Pricer) -> Decimal:
        return pricer.price(self.billed_model, self.usage, self.billed_modifiers).total

    def allowed(self, pricer: Pricer) -> Decimal:
        """The bill cut to what the request allowed: its model and modifiers (the workspace's
        US default included), its max_tokens, its real input; never more than the bill (a
        fast request that ran at standard speed billed, and allowed, the standard price)."""
        u = self.usage
        within = TokenUsage(
            input_tokens=min(u.input_tokens, self.true_input),
            output_tokens=min(u.output_tokens, self.max_tokens),
        )
        return min(pricer.price(self.model, within, self.asked).total, self.billed(pricer))


@dataclass
class BillingUpstream:
    behaviours: list[str] = field(default_factory=list)
    counts: list[str] = field(default_factory=list)
    stall_s: float = 5.0
    # The Messages answers compressed so ("gzip", "deflate"), whatever the request's
    # accept-encoding says (a gateway that compresses anyway); another name is sent as its
    # header over the plain bytes.
    encoding: str | None = None

    def __post_init__(self) -> None:
        self.gate = threading.Event()  # lets the "gated" answers finish
        self.bills: list[Bill] = []
        self.batches: dict[str, list[dict[str, Any]]] = {}  # id -> its results
        self.count_calls = 0
        self.messages_calls = 0
        self._behaviours = deque(self.behaviours)
        self._counts = deque(self.counts)
        self._ids = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> BillingUpstream:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        started.result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    # --- one connection ----------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1].split("?")[0]
            headers = {
                k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:] if x)
            }
            raw = await reader.readexactly(int(headers.get("content-length", 0)))
            if path.startswith("/v1/messages/batches"):
                await self._batches(lines[0].split(" ")[0], path, raw, writer)
                return
            if not lines[0].startswith("POST "):  # the models list and the like: not here
                error = {"type": "error", "error": {"type": "not_found_error", "message": path}}
                await _write(writer, 404, "application/json", [json.dumps(error).encode()])
                return
            body = json.loads(raw)
            if path.endswith("/count_tokens"):
                await self._count(body, writer)
            else:
                await self._messages(body, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # stopped: end quietly (a cancelled handler is logged as an error)
        finally:
            writer.close()

    async def _count(self, body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        self.count_calls += 1
        kind = self._counts.popleft() if self._counts else "honest"
        true = estimate_request_tokens(body)
        value: Any = {
            "honest": true,
            "low": 1,
            "zero": 0,
            "negative": -10_000_000,
            "string": "many",
        }.get(kind)
        answer = {} if kind == "missing" else {"input_tokens": value}
        await _write(writer, 200, "application/json", [json.dumps(answer).encode()])

    async def _messages(
        self, body: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.messages_calls += 1
        encoder = _Encoder(self.encoding) if self.encoding else None
        try:
            await self._answer(body, reader, writer, encoder)
        finally:
            if encoder is not None:
                writer.write(encoder.finish())

    async def _answer(
        self,
        body: dict[str, Any],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        encoder: _Encoder | None,
    ) -> None:
        kind = self._behaviours.popleft() if self._behaviours else "honest"
        request_id = None if kind == "no_answer" else f"req_billing_{next(self._ids)}"
        bill = _bill(body, kind, request_id)
        self.bills.append(bill)
        max_tokens, true_input = bill.max_tokens, bill.true_input
        billed_model, usage = bill.billed_model, bill.usage
        ran_geo, ran_speed = bill.billed_modifiers.inference_geo, bill.billed_modifiers.speed
        output = usage.output_tokens
        if kind == "no_answer":
            return
        if kind == "overloaded":
            error = {"type": "error", "error": {"type": "overloaded_error", "message": "no"}}
            await _write(
                writer,
                529,
                "application/json",
                [json.dumps(error).encode()],
                request_id,
                encoder=encoder,
            )
            return
        ran = {"inference_geo": ran_geo, "speed": ran_speed}
        start_usage = {"input_tokens": true_input, "output_tokens": 1, **ran}
        message = {
            "id": f"msg_{request_id}",
            "type": "message",
            "role": "assistant",
            "model": billed_model,
            "content": [],
            "stop_reason": None,
            "usage": start_usage,
        }
        final_output: Any = "1e30" if kind == "bad_usage" else usage.output_tokens
        status = 200  # 0 once the head is sent
        if kind == "swapped_late":
            kind_of = "text/event-stream" if body.get("stream") else "application/json"
            await _write(writer, 200, kind_of, [], request_id, encoder=encoder)
            await asyncio.sleep(LATE_S)
            status = 0
        if not body.get("stream"):
            message["content"] = [{"type": "text", "text": "ok"}]
            message["stop_reason"] = "end_turn"
            message["usage"] = {**start_usage, "output_tokens": final_output}
            data = json.dumps(message).encode()
            if kind in ("cut", "stall"):
                data = data[: len(data) // 2]  # a body cut short: no usage can be read
            await _write(writer, status, "application/json", [data], request_id, encoder=encoder)
            if kind == "stall":
                await _hang(reader, self.stall_s)
            return
        delta = {"type": "text_delta", "text": "lorem ipsum "}
        events = [
            _sse("message_start", {"type": "message_start", "message": message}),
            _sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            *[
                _sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": delta},
                )
                for _ in range(4)
            ],
            _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
            _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "max_tokens" if output >= max_tokens else "end_turn"},
                    "usage": {"output_tokens": final_output},
                },
            ),
            _sse("message_stop", {"type": "message_stop"}),
        ]
        if kind == "cut":
            events = events[:4]
        elif kind == "stall":
            events = events[:1]
        pause = 0.02 if kind == "slow" else 0.0
        if kind == "gated":
            await _write(writer, 200, "text/event-stream", events[:1], request_id, encoder=encoder)
            while not self.gate.is_set():
                await asyncio.sleep(0.01)
            await _write(writer, 0, "", events[1:], encoder=encoder)
            return
        await _write(
            writer, status, "text/event-stream", events, request_id, pause, encoder=encoder
        )
        if kind == "stall":
            await _hang(reader, self.stall_s)

    # --- Message Batches: each ends at once, each request billed by its behaviour ----------

    async def _batches(
        self, method: str, path: str, raw: bytes, writer: asyncio.StreamWriter
    ) -> None:
        parts = path.split("/")  # ["", "v1", "messages", "batches", id, "results"]
        if method == "POST" and len(parts) == 4:
            batch_id = f"msgbatch_billing_{next(self._ids)}"
            lines = []
            for item in json.loads(raw)["requests"]:
                kind = self._behaviours.popleft() if self._behaviours else "honest"
                kind = kind if kind in BATCH_BEHAVIOURS else "honest"
                line: dict[str, Any] = {"custom_id": item["custom_id"]}
                if kind == "overloaded":  # errored: bills nothing
                    error = {"type": "overloaded_error", "message": "no"}
                    line["result"] = {"type": "errored", "error": {"type": "error", "error": error}}
                else:
                    bill = _bill(item["params"], kind, f"{batch_id}/{item['custom_id']}", "batch")
                    self.bills.append(bill)
                    line["result"] = {"type": "succeeded", "message": _message(bill)}
                lines.append(line)
            self.batches[batch_id] = lines
        elif method != "GET" or len(parts) not in (5, 6) or parts[4] not in self.batches:
            await _write(writer, 404, "application/json", [b'{"type":"error"}'])
            return
        batch_id = parts[4] if len(parts) > 4 else batch_id
        if len(parts) == 6:  # the results, one JSON line each
            jsonl = "".join(json.dumps(line) + "\n" for line in self.batches[batch_id])
            encoder = _Encoder(self.encoding) if self.encoding else None
            await _write(writer, 200, "application/binary", [jsonl.encode()], encoder=encoder)
            writer.write(encoder.finish() if encoder is not None else b"")
            return
        results = self.batches[batch_id]
        ok = sum(1 for r in results if r["result"]["type"] == "succeeded")
        batch = {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "ended",
            "request_counts": {
                "processing": 0,
                "succeeded": ok,
                "errored": len(results) - ok,
                "canceled": 0,
                "expired": 0,
            },
            "results_url": f"{self.base_url}/v1/messages/batches/{batch_id}/results",
        }
        await _write(writer, 200, "application/json", [json.dumps(batch).encode()])


# What a batch's request may meet (the others are a stream's or a connection's).
BATCH_BEHAVIOURS = ("honest", "greedy", "swapped", "bad_usage", "over_max", "overloaded")


def _bill(
    body: dict[str, Any], kind: str, request_id: str | None, processing: str = "standard"
) -> Bill:
    """What the upstream bills a request that meets `kind`."""
    model, max_tokens = str(body["model"]), int(body["max_tokens"])
    true_input = estimate_request_tokens(body)
    speed = str(body.get("speed") or "standard")
    geo = body.get("inference_geo")
    ran_geo = str(geo or ("us" if kind == "workspace_us" else "global"))
    asked = Modifiers(speed=speed, processing=processing, inference_geo=ran_geo)
    ran_speed = "standard" if kind == "fast_fallback" else speed
    billed_model = DEARER.get(model, model) if kind.startswith("swapped") else model
    billed = Modifiers(speed=ran_speed, processing=processing, inference_geo=ran_geo)
    output = HONEST_OUTPUT if kind in ("honest", "slow", "gated") else max_tokens
    if kind == "over_max":
        output = 2 * max_tokens + 7
    if kind == "overloaded":
        output, true_input = 0, 0
    usage = TokenUsage(input_tokens=true_input, output_tokens=min(output, 10**9))
    return Bill(request_id, kind, model, max_tokens, asked, true_input, billed_model, billed, usage)


def _message(bill: Bill) -> dict[str, Any]:
    """A batch result's message, as billed."""
    output: Any = "1e30" if bill.behaviour == "bad_usage" else bill.usage.output_tokens
    ran = bill.billed_modifiers
    return {
        "id": f"msg_{bill.request_id}",
        "type": "message",
        "role": "assistant",
        "model": bill.billed_model,
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "max_tokens" if bill.usage.output_tokens >= bill.max_tokens else "end_turn",
        "usage": {
            "input_tokens": bill.usage.input_tokens,
            "output_tokens": output,
            "inference_geo": ran.inference_geo,
            "speed": ran.speed,
            "service_tier": "batch",
        },
    }


def _sse(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


async def _write(
    writer: asyncio.StreamWriter,
    status: int,
    content_type: str,
    chunks: list[bytes],
    request_id: str | None = None,
    pause: float = 0.0,
    encoder: _Encoder | None = None,
) -> None:
    """The head (not when `status` is 0: more of a body already begun), then each chunk
    (compressed as it goes, with `encoder`); the body ends when the connection closes."""
    if status:
        head = [f"HTTP/1.1 {status} X", f"content-type: {content_type}", "connection: close"]
        if request_id is not None:
            head.append(f"request-id: {request_id}")
        if encoder is not None:
            head.append(f"content-encoding: {encoder.name}")
            encoder.begun = True
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    for chunk in chunks:
        writer.write(encoder.compress(chunk) if encoder is not None else chunk)
        await writer.drain()
        if pause:
            await asyncio.sleep(pause)


class _Encoder:
    """A body compressed as it is written, each chunk flushed so that it streams."""

    def __init__(self, name: str) -> None:
        self.name = name
        wbits = {"gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}.get(name)
        self._zlib = None if wbits is None else zlib.compressobj(wbits=wbits)
        self.begun = False  # its head was sent

    def compress(self, chunk: bytes) -> bytes:
        if self._zlib is None:
            return chunk
        return self._zlib.compress(chunk) + self._zlib.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return b"" if self._zlib is None or not self.begun else self._zlib.flush()


async def _hang(reader: asyncio.StreamReader, bound_s: float) -> None:
    """Hold the connection open until the peer leaves, at most `bound_s`."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(reader.read(1), bound_s)
