"""What each way the upstream can fail means for money, through the proxy's client
(tuiagent/proxy/upstream.py, aiohttp under httpx2): only a connection never made is "never
sent, nothing billed"; a request the upstream took and then failed on (it hung up before
answering, cut the answer, answered with something that is not HTTP) may have been billed,
and is recorded at its worst case. A response's body reaches the client byte for byte,
nothing decompressed, and the path goes upstream as the proxy spelled it."""

from __future__ import annotations

import gzip
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest

from tests.support.proxy_harness import proxy_to

HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
REQUEST = b'{"model":"claude-sonnet-4-5","max_tokens":300,"messages":[{"role":"user","content":"hi"}]}'  # fmt: skip
COUNT = b'{"input_tokens": 12}'


def _recv(conn: socket.socket) -> bytes:
    """More bytes; a peer that hung up ends the connection (recv's b"" spun this thread
    forever, starving the rest of its test worker: the suite's last tests timed out)."""
    data = conn.recv(65536)
    if not data:
        raise ConnectionError("the client hung up")
    return data


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += _recv(conn)
    head, _, body = data.partition(b"\r\n\r\n")
    lengths = [
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    ]  # fmt: skip
    length = lengths[0] if lengths else 0
    while len(body) < length:
        body += _recv(conn)
    return head


@contextmanager
def raw_upstream(
    answer: Callable[[socket.socket, bytes], None],
) -> Iterator[tuple[str, list[bytes]]]:
    """A bare HTTP/1.1 server on 127.0.0.1: count_tokens answered, each Messages request
    handed to `answer` with its head (which the test keeps)."""
    server = socket.create_server(("127.0.0.1", 0))
    heads: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                try:
                    while True:
                        head = _read_request(conn)
                        heads.append(head)
                        if b"count_tokens" in head.split(b"\r\n")[0]:
                            conn.sendall(
                                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                b"content-length: %d\r\n\r\n%s" % (len(COUNT), COUNT)
                            )
                            continue
                        answer(conn, head)
                        break
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", heads
    finally:
        server.close()


def _hang_up(conn: socket.socket, _head: bytes) -> None:
    conn.shutdown(socket.SHUT_RDWR)


def _not_http(conn: socket.socket, _head: bytes) -> None:
    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")


def _cut_stream(conn: socket.socket, _head: bytes) -> None:
    event = b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"claude-sonnet-4-5","usage":{"input_tokens":12,"output_tokens":1}}}\n\n'  # fmt: skip
    conn.sendall(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        b"%x\r\n%s\r\n" % (len(event), event)
    )
    conn.shutdown(socket.SHUT_RDWR)  # no last chunk


@pytest.mark.parametrize("answer", [_hang_up, _not_http])
def test_a_request_the_upstream_took_is_recorded_at_its_worst_case(
    tmp_path: Path, answer: Callable[[socket.socket, bytes], None]
) -> None:
    with raw_upstream(answer) as (url, heads), proxy_to(url, tmp_path, "5.00") as proxy:
        response = httpx2.post(proxy.url + "/v1/messages", content=REQUEST, headers=HEADERS)
        assert response.status_code != 500
        [hold] = proxy.records("hold")
        [call] = proxy.records("attempt")
    assert [h for h in heads if h.startswith(b"POST /v1/messages ")]  # the upstream had it
    assert call.get("sent") is not False and call["usage_unknown"] is True
    assert call["cost_usd"] == hold["reserved_usd"] > 0  # the worst case, held and kept


def test_an_answer_cut_after_its_input_was_billed_keeps_the_most_output_allowed(
    tmp_path: Path,
) -> None:
    with raw_upstream(_cut_stream) as (url, _), proxy_to(url, tmp_path, "5.00") as proxy:
        response = httpx2.post(proxy.url + "/v1/messages", content=REQUEST, headers=HEADERS)
        assert b"message_start" in response.content and b"message_stop" not in response.content
        [call] = proxy.records("attempt")
    assert call["input_tokens"] == 12 and call["output_tokens"] == 300  # max_tokens
    assert call["output_unknown"] is True and call["error_type"] == "connection_error"


def test_a_connection_never_made_bills_nothing(tmp_path: Path) -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()  # nothing listens there: refused
    with proxy_to(url, tmp_path, "5.00") as proxy:
        response = httpx2.post(proxy.url + "/v1/messages", content=REQUEST, headers=HEADERS)
        assert response.status_code == 502
        [call] = proxy.records("attempt")
    assert call["sent"] is False and call["cost_usd"] == 0
    assert proxy.budget.snapshot().in_flight == 0


def test_the_body_passes_byte_for_byte_and_the_path_as_spelled(tmp_path: Path) -> None:
    body = gzip.compress(b'{"data": [], "has_more": false}')

    def gzipped(conn: socket.socket, _head: bytes) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )

    with (
        raw_upstream(gzipped) as (url, heads),
        proxy_to(url, tmp_path, "5.00") as proxy,
        httpx2.Client() as client,
    ):
        request = client.build_request("GET", proxy.url + "/v1/%6Dodels/?limit=2", headers=HEADERS)  # fmt: skip
        response = client.send(request, stream=True)
        raw = b"".join(response.iter_raw())
        counted = httpx2.post(proxy.url + "/v1/messages/count_tokens", content=b"{}")
    assert raw == body and response.headers["content-encoding"] == "gzip"
    assert heads[0].split(b"\r\n")[0] == b"GET /v1/models?limit=2 HTTP/1.1"
    # A body sent with no content-type goes on with none (nothing added on the way).
    assert counted.json() == {"input_tokens": 12}
    assert b"content-type" not in heads[1].lower() and b"content-length: 2" in heads[1].lower()


def test_a_batch_object_compressed_anyway_reaches_the_client_readable(tmp_path: Path) -> None:
    """A batch object is read whole (httpx undoes its gzip) and passed on re-written (its
    results_url pointed at the proxy): it went with the upstream's `content-encoding: gzip`
    over the plain JSON, which no client could read."""
    batch = b'{"id":"msgbatch_1","type":"message_batch","processing_status":"in_progress","results_url":null}'  # fmt: skip
    body = gzip.compress(batch)

    def gzipped(conn: socket.socket, _head: bytes) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )

    params = REQUEST.decode()
    create = f'{{"requests":[{{"custom_id":"a","params":{params}}}]}}'.encode()
    with raw_upstream(gzipped) as (url, _), proxy_to(url, tmp_path, "5.00") as proxy:
        answer = httpx2.post(proxy.url + "/v1/messages/batches", content=create, headers=HEADERS)
    assert answer.status_code == 200 and answer.json()["id"] == "msgbatch_1"
    assert "content-encoding" not in answer.headers


@pytest.mark.parametrize("stream", [True, False])
def test_an_answer_without_a_content_type_is_read_as_its_bytes_show(
    tmp_path: Path, stream: bool
) -> None:
    """An answer whose content-type was dropped on the way (a gateway): its SSE was read as
    a JSON body, its usage never found, the call recorded as "connection dropped" at its
    worst case. Its first bytes say which it is."""
    sse = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"claude-sonnet-4-5","usage":{"input_tokens":12,"output_tokens":1}}}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )  # fmt: skip
    whole = b'\n{"id":"m","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":"end_turn","usage":{"input_tokens":12,"output_tokens":9}}'  # fmt: skip
    body = sse if stream else whole

    def bare(conn: socket.socket, _head: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))

    with raw_upstream(bare) as (url, _), proxy_to(url, tmp_path, "5.00") as proxy:
        response = httpx2.post(proxy.url + "/v1/messages", content=REQUEST, headers=HEADERS)
        [call] = proxy.records("turn", "attempt")
    assert response.content == body
    assert call["type"] == "turn" and (call["input_tokens"], call["output_tokens"]) == (12, 9)
