"""A Messages API on 127.0.0.1 whose answers a test scripts, for clients (the coding agent)
whose tools the offline model does not know: each request's answer is a list of content
blocks from `answer(request)`; usage is the local estimate of the request and the blocks."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tuiagent.llm.tokens import estimate_request_tokens, estimate_tokens

Answer = Callable[[dict[str, Any]], list[dict[str, Any]]]


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


class ScriptedAPI:
    def __init__(self, answer: Answer, delay_s: float = 0.0) -> None:
        self.answer = answer
        self.delay_s = delay_s  # before each answer: an upstream further away
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.batches: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ScriptedAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- Message Batches: created in_progress, ended by the test ------------------------

    def _batch(self, batch_id: str) -> dict[str, Any]:
        batch = self.batches[batch_id]
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        outcomes = batch["outcomes"]
        for request in batch["requests"]:
            counts[outcomes.get(request["custom_id"], "processing")] += 1
        return {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": batch["status"],
            "request_counts": counts,
            "ended_at": "2026-12-07T00:00:00Z" if batch["status"] == "ended" else None,
            "created_at": "2026-12-07T00:00:00Z",
            "expires_at": "2026-12-08T00:00:00Z",
            "archived_at": None,
            "cancel_initiated_at": None,
            # As the real API gives it: absolute, on its own host.
            "results_url": (
                f"{self.base_url}/v1/messages/batches/{batch_id}/results"
                if batch["status"] == "ended"
                else None
            ),
        }

    def end_batch(self, batch_id: str, outcomes: dict[str, str] | None = None) -> None:
        """End a batch: each request `succeeded` unless `outcomes` says errored, canceled or
        expired."""
        batch = self.batches[batch_id]
        for request in batch["requests"]:
            batch["outcomes"][request["custom_id"]] = (outcomes or {}).get(
                request["custom_id"], "succeeded"
            )
        batch["status"] = "ended"

    def _results(self, batch_id: str) -> bytes:
        lines = []
        batch = self.batches[batch_id]
        for request in batch["requests"]:
            kind = batch["outcomes"][request["custom_id"]]
            result: dict[str, Any] = {"type": kind}
            if kind == "succeeded":
                _, message = self._events(request["params"])
                message["usage"] = {**message["usage"], "service_tier": "batch"}
                result["message"] = message
            elif kind == "errored":
                error = {"type": "invalid_request_error", "message": "bad request"}
                result["error"] = {"type": "error", "error": error}
            lines.append(json.dumps({"custom_id": request["custom_id"], "result": result}))
        return ("\n".join(lines) + "\n").encode()

    def messages(self) -> list[dict[str, Any]]:
        """The Messages requests it answered (count_tokens aside)."""
        return [b for p, _, b in self.requests if p.split("?")[0] == "/v1/messages"]

    def _events(self, request: dict[str, Any]) -> tuple[list[bytes], dict[str, Any]]:
        blocks = self.answer(request)
        model = str(request.get("model"))
        usage = {"input_tokens": estimate_request_tokens(request), "output_tokens": 1}
        out = 0
        msg_id = f"msg_scripted{len(self.requests):06d}"
        message = {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        events = [_sse("message_start", {"type": "message_start", "message": message})]
        for i, block in enumerate(blocks):
            if block["type"] == "text":
                start = {"type": "text", "text": ""}
                delta = {"type": "text_delta", "text": block["text"]}
                out += estimate_tokens(block["text"])
            else:
                start = {**block, "input": {}}
                text = json.dumps(block["input"])
                delta = {"type": "input_json_delta", "partial_json": text}
                out += estimate_tokens(text) + 10
            events.append(
                _sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": i, "content_block": start},
                )
            )
            events.append(
                _sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": i, "delta": delta},
                )
            )
            events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": i}))
        stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        events.append(
            _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": out},
                },
            )
        )
        events.append(_sse("message_stop", {"type": "message_stop"}))
        whole = {
            **message,
            "content": blocks,
            "stop_reason": stop,
            "usage": {**usage, "output_tokens": out},
        }
        return events, whole

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, ctype: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                self.send_header("request-id", "req_scripted")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                request = json.loads(body or b"{}")
                headers = {k.lower(): v for k, v in self.headers.items()}
                with api._lock:
                    api.requests.append((self.path, headers, request))
                path = self.path.split("?")[0]
                if api.delay_s:
                    time.sleep(api.delay_s)
                if path == "/v1/messages/count_tokens":
                    counted = {"input_tokens": estimate_request_tokens(request)}
                    self._send(200, "application/json", json.dumps(counted).encode())
                elif path == "/v1/messages/batches":
                    batch_id = f"msgbatch_scripted{len(api.batches):04d}"
                    api.batches[batch_id] = {
                        "requests": request["requests"],
                        "status": "in_progress",
                        "outcomes": {},
                    }
                    self._send(200, "application/json", json.dumps(api._batch(batch_id)).encode())
                elif path.startswith("/v1/messages/batches/") and path.endswith("/cancel"):
                    batch_id = path.split("/")[4]
                    api.end_batch(
                        batch_id,
                        {r["custom_id"]: "canceled" for r in api.batches[batch_id]["requests"]},
                    )
                    self._send(200, "application/json", json.dumps(api._batch(batch_id)).encode())
                elif path == "/v1/messages":
                    events, whole = api._events(request)
                    if request.get("stream"):
                        self._send(200, "text/event-stream", b"".join(events))
                    else:
                        self._send(200, "application/json", json.dumps(whole).encode())
                else:
                    error = {"type": "error", "error": {"type": "not_found_error", "message": path}}
                    self._send(404, "application/json", json.dumps(error).encode())

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                with api._lock:
                    api.requests.append((self.path, {}, {}))
                parts = path.split("/")
                if path.startswith("/v1/messages/batches/") and parts[4] in api.batches:
                    if path.endswith("/results"):
                        self._send(200, "application/binary", api._results(parts[4]))
                    else:
                        self._send(
                            200, "application/json", json.dumps(api._batch(parts[4])).encode()
                        )
                elif path == "/v1/messages/batches":
                    data = [api._batch(b) for b in api.batches]
                    listed = {"data": data, "has_more": False, "first_id": None, "last_id": None}
                    self._send(200, "application/json", json.dumps(listed).encode())
                else:
                    error = {"type": "error", "error": {"type": "not_found_error", "message": path}}
                    self._send(404, "application/json", json.dumps(error).encode())

        return Handler
