"""The proxy fails closed (issue 23, item 2): every spelling of a billable path is metered,
a POST to a path it does not know is refused, and a billable body it cannot read exactly is
refused before anything is sent, with a 400 that names the field. Never a 500."""

from __future__ import annotations

import http.client
import json
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anthropic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.loopback import Fault, LoopbackAPI
from tests.support.proxy_harness import KEY, MODEL, Proxied, proxied_loopback

PROMPT = [{"role": "user", "content": "hello there, who are you?"}]
GOOD: dict[str, Any] = {"model": MODEL, "max_tokens": 50, "messages": PROMPT}


def post(
    proxy: Proxied,
    path: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> tuple[int, dict[str, str], bytes]:
    """A request with the path exactly as written (http.client does not normalise it)."""
    address = urlsplit(proxy.url)
    conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)
    try:
        conn.request(
            method,
            path,
            body=body,
            headers={"x-api-key": KEY, "content-type": "application/json", **(headers or {})},
        )
        answer = conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        conn.close()


def read_answer(sock: socket.socket) -> str:
    """A whole HTTP answer with a content-length, read off a raw socket."""

    def more() -> bytes:
        chunk = sock.recv(65536)
        assert chunk, "the proxy hung up before its whole answer"  # (b"": spun for ever)
        return chunk

    data = b""
    while b"\r\n\r\n" not in data:
        data += more()
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(h for h in head.lower().split(b"\r\n") if h.startswith(b"content-length")).split(b":")[
            1
        ]
    )
    while len(body) < length:
        body += more()
    return (head + b"\r\n\r\n" + body).decode()


def upstream_paths(api: LoopbackAPI) -> list[str]:
    return [path.split("?")[0] for path, _, _ in api.requests]


def refusal(status: int, headers: dict[str, str], body: bytes) -> str:
    """The message of an Anthropic-shaped refusal the SDKs do not retry."""
    assert headers["x-should-retry"] == "false"
    error = json.loads(body)
    assert error["type"] == "error" and set(error["error"]) == {"type", "message"}
    return str(error["error"]["message"])


# --- routes on the normalised path ---------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "//v1/messages",
        "/v1//messages",
        "/v1/./messages",
        "/v1/x/../messages",
        "/v1/messages/",
        "/v1/%6Dessages",
        "/%761/messages?beta=true",
        "/../v1/messages",
    ],
)
def test_every_spelling_of_the_messages_path_is_metered(tmp_path: Path, path: str) -> None:
    with proxied_loopback(tmp_path) as (api, proxy):
        status, _, body = post(proxy, path, json.dumps(GOOD).encode())
        (turn,) = proxy.records("turn")
    assert status == 200 and json.loads(body)["type"] == "message"
    assert turn["output_tokens"] > 0
    # What the upstream is sent is the path that was metered, not the client's spelling.
    assert upstream_paths(api)[-1] == "/v1/messages"


def test_the_sdk_with_a_base_url_ending_in_two_slashes_is_metered(tmp_path: Path) -> None:
    with proxied_loopback(tmp_path) as (api, proxy):
        client = anthropic.Anthropic(api_key=KEY, base_url=proxy.url + "//", max_retries=0)
        message = client.messages.create(**GOOD)
        (turn,) = proxy.records("turn")
    assert turn["output_tokens"] == message.usage.output_tokens
    assert "//v1/messages" not in upstream_paths(api)


@pytest.mark.parametrize(
    ("method", "headers", "said"),
    [
        ("GET", {"X-HTTP-Method-Override": "POST"}, "x-http-method-override would have"),
        ("GET", {"X-HTTP-Method": "POST"}, "x-http-method would have"),
        ("PUT", {"X-Method-Override": "POST"}, "x-method-override would have"),
        ("POST", {"X-HTTP-Method-Override": "PUT"}, "x-http-method-override would have"),
        ("GET", {}, "a GET with a body is not passed on"),
    ],
)
def test_a_request_a_gateway_could_read_as_another_method_is_refused_and_not_sent(
    tmp_path: Path, method: str, headers: dict[str, str], said: str
) -> None:
    """GETs pass unmetered; a GET to /v1/messages with a Messages body and a method
    override would be billed by an upstream (a gateway) that honours the override."""
    with proxied_loopback(tmp_path) as (api, proxy):
        status, answer, body = post(
            proxy, "/v1/messages", json.dumps(GOOD).encode(), headers, method=method
        )
        (refused,) = proxy.records("refused")
        assert api.requests == []
    assert status == 400 and said in refusal(status, answer, body)
    assert said in refused["error"]


@pytest.mark.parametrize("name", ["x-api-key", "authorization"])
def test_a_request_naming_two_keys_is_refused_and_not_sent(tmp_path: Path, name: str) -> None:
    """Budgets by key held a request against one of two `x-api-key` headers (the last),
    and the upstream may bill the other: a key's budget was passed by adding a second."""
    body = json.dumps(GOOD).encode()
    with proxied_loopback(tmp_path) as (api, proxy):
        address = urlsplit(proxy.url)
        conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)
        conn.putrequest("POST", "/v1/messages")
        for value in (KEY, "sk-ant-api03-ANOTHER-KEY"):
            conn.putheader(name, value if name == "x-api-key" else f"Bearer {value}")
        conn.putheader("content-length", str(len(body)))
        conn.endheaders(body)
        answer = conn.getresponse()
        message = refusal(
            answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
        )
        conn.close()
        (refused,) = proxy.records("refused")
        assert api.requests == []
    assert answer.status == 400 and f"{name} is given twice, with different values" in message
    assert refused["error"].endswith(
        message.removeprefix("tuiagent proxy: refused before sending: ")
    )


def test_a_post_to_a_path_the_proxy_does_not_know_is_refused_and_not_sent(tmp_path: Path) -> None:
    with proxied_loopback(tmp_path) as (api, proxy):
        status, headers, body = post(proxy, "/v1/complete?x=1", b'{"prompt": "hi"}')
        (refused,) = proxy.records("refused")
        assert api.requests == []
    message = refusal(status, headers, body)
    assert status == 404 and json.loads(body)["error"]["type"] == "not_found_error"
    assert "POST /v1/complete" in message and "proxy_unbilled_paths" in message
    assert refused["error"] == message


def test_a_path_the_config_lists_as_unbilled_passes_unmetered(tmp_path: Path) -> None:
    app = {"unbilled_paths": ("/v1/complete", "/v1/files/*")}
    with proxied_loopback(tmp_path, app=app) as (api, proxy):
        status, _, body = post(proxy, "/v1//complete", b'{"prompt": "hi"}')
        post(proxy, "/v1/files/abc", b"{}")
        assert proxy.records("refused", "turn", "attempt") == []
        assert upstream_paths(api) == ["/v1/complete", "/v1/files/abc"]
    assert status == 404 and json.loads(body)["error"]["type"] == "not_found_error"  # upstream's


def test_reads_and_count_tokens_pass_through(tmp_path: Path) -> None:
    with proxied_loopback(tmp_path) as (api, proxy):
        client = anthropic.Anthropic(api_key=KEY, base_url=proxy.url, max_retries=0)
        first = client.models.list().data[0].id
        assert client.models.retrieve(first).id == first
        assert client.messages.count_tokens(model=MODEL, messages=PROMPT).input_tokens > 0
        assert proxy.records("turn", "attempt", "refused") == []
    assert upstream_paths(api) == ["/v1/models", f"/v1/models/{first}", "/v1/messages/count_tokens"]


def test_a_path_that_is_not_one_exact_path_is_refused(tmp_path: Path) -> None:
    with proxied_loopback(tmp_path) as (api, proxy):
        answers = [post(proxy, path, json.dumps(GOOD).encode()) for path in ("/v1/%ZZ", "/v1/%FF")]
        assert api.requests == []
    for status, headers, body in answers:
        assert status == 400 and "the path" in refusal(status, headers, body)


# --- bodies it cannot read exactly -----------------------------------------------------------


def _with(**changes: Any) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


BAD_BODIES = [
    (b"model=claude&max_tokens=5", "request body: not valid JSON"),
    (json.dumps(GOOD).encode("utf-16"), "request body: not UTF-8"),
    (b"[1, 2]", "request body: Input should be a valid dictionary"),
    (_with(max_tokens="4096"), "max_tokens: Input should be a valid integer"),
    (_with(max_tokens=4096.0), "max_tokens: Input should be a valid integer"),
    (_with(max_tokens=True), "max_tokens: Input should be a valid integer"),
    (_with(max_tokens=0), "max_tokens: Input should be greater than or equal to 1"),
    (_with(max_tokens=-5), "max_tokens: Input should be greater than or equal to 1"),
    (_with(messages=5), "messages: Input should be a valid list"),
    (_with(messages=["hi"]), "messages.0: Input should be a valid dictionary"),
    (_with(messages=[{"role": "user", "content": 5}]), "messages.0.content: Input should be"),
    (_with(model=7), "model: Input should be a valid string"),
    (json.dumps({"model": MODEL, "messages": PROMPT}).encode(), "max_tokens: Field required"),
    (_with(stream="yes"), "stream: Input should be a valid boolean"),
    (_with(system=3), "system: Input should be"),
    (_with(tools={"name": "x"}), "tools: Input should be a valid list"),
    (_with(thinking={"type": "enabled", "budget_tokens": "2048"}), "thinking.budget_tokens"),
    (_with(speed=["fast"]), "speed: Input should be a valid string"),
    # server-side fallback: another model, of the server's choosing, may run and bill it
    (_with(fallbacks="default"), "fallbacks: the server may run the request again"),
    (_with(fallbacks=[{"model": "claude-fable-5-2"}]), "fallbacks: the server may run"),
    (_with(anthropic_beta="context-1m-2025-08-07"), "anthropic_beta: Input should be a valid list"),
    (
        b'{"model": "%s", "max_tokens": 5, "max_tokens": 64000, "messages": []}' % MODEL.encode(),
        "max_tokens: the key appears twice",
    ),
    (_with().replace(b"50", b"NaN"), "request body: NaN is not JSON"),
    (b'{"model": "m", "max_tokens": 5, "messages": ' + b"[" * 100_000, "request body:"),
    (b'{"max_tokens": 1' + b"0" * 5000 + b"}", "request body:"),
]


@pytest.mark.parametrize(("raw", "named"), BAD_BODIES)
def test_a_body_it_cannot_read_exactly_is_refused_before_anything_is_sent(
    tmp_path: Path, raw: bytes, named: str
) -> None:
    with proxied_loopback(tmp_path) as (api, proxy):
        status, headers, body = post(proxy, "/v1/messages", raw)
        (refused,) = proxy.records("refused")
        assert api.requests == []  # not even a count_tokens
    message = refusal(status, headers, body)
    assert status == 400 and json.loads(body)["error"]["type"] == "invalid_request_error"
    assert message.startswith("tuiagent proxy: refused before sending: ")
    assert named in message and refused["error"] == message


class Stderr:
    """What the process wrote to its stderr (uvicorn logs a traceback there, not to the root
    logger), read at the end of the test."""

    def __init__(self, capfd: pytest.CaptureFixture[str]) -> None:
        self.capfd = capfd

    def clean(self) -> bool:
        err = self.capfd.readouterr().err
        return "Traceback" not in err and "Exception in ASGI" not in err and "500" not in err


@pytest.fixture
def stderr(capfd: pytest.CaptureFixture[str]) -> Stderr:
    return Stderr(capfd)


def test_a_negative_count_is_not_believed_and_is_no_500(tmp_path: Path, stderr: Stderr) -> None:
    api = LoopbackAPI(faults=[Fault("count_negative"), Fault("count_string")])
    with proxied_loopback(tmp_path, api=api) as (_, proxy):
        answers = [post(proxy, "/v1/messages", json.dumps(GOOD).encode()) for _ in range(2)]
        turns = proxy.records("turn")
    assert [status for status, _, _ in answers] == [200, 200]
    assert [t["input_count_source"] for t in turns] == ["estimate", "estimate"]
    assert stderr.clean()


def test_a_client_that_closes_mid_body_is_no_500_and_nothing_is_sent(
    tmp_path: Path, stderr: Stderr
) -> None:
    with proxied_loopback(tmp_path) as (api, proxy):
        address = urlsplit(proxy.url)
        with socket.create_connection((address.hostname, address.port)) as sock:
            sock.sendall(
                b"POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                b"content-type: application/json\r\ncontent-length: 5000\r\n\r\n"
                + json.dumps(GOOD).encode()[:40]
            )
            time.sleep(0.2)
        time.sleep(0.3)
        status, _, _ = post(proxy, "/v1/messages", json.dumps(GOOD).encode())  # still serving
        assert upstream_paths(api) == ["/v1/messages/count_tokens", "/v1/messages"]
    assert status == 200 and stderr.clean()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
FIELDS = ("model", "max_tokens", "messages", "system", "tools", "stream", "thinking", "speed")


def test_any_body_is_answered_or_refused_never_a_500(tmp_path: Path, stderr: Stderr) -> None:
    """A valid request with any of its fields replaced by any JSON value, or dropped."""
    with proxied_loopback(tmp_path, cap="1000") as (api, proxy):

        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        )
        @given(st.dictionaries(st.sampled_from(FIELDS), JSON | st.just("DROP"), max_size=3))
        def check(changes: dict[str, Any]) -> None:
            body = {k: v for k, v in {**GOOD, **changes}.items() if v != "DROP"}
            before = api.messages_calls()
            status, headers, raw = post(proxy, "/v1/messages", json.dumps(body).encode())
            sent = api.messages_calls() - before
            assert status < 500, raw
            if status == 400 and headers.get("x-should-retry") == "false":
                assert sent == 0  # refused by the proxy: nothing went
            assert sent <= 1

        check()
        records = proxy.records("turn", "attempt")
        # Every request the upstream saw has exactly one record.
        assert len(records) == api.messages_calls()
    assert stderr.clean()


def test_a_body_over_the_apis_32_mb_is_refused_before_it_is_read(tmp_path: Path) -> None:
    with proxied_loopback(tmp_path) as (api, proxy):
        address = urlsplit(proxy.url)
        with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                b"content-type: application/json\r\ncontent-length: 40000000\r\n\r\n{"
            )
            answer = read_answer(sock)
        assert api.requests == []
    assert answer.startswith("HTTP/1.1 413 ") and "request_too_large" in answer
    assert "over 32 MB" in answer
