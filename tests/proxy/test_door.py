"""A local server a web page cannot use (issue 23, item 7): Host and Origin checked, a
header-read timeout and a connection limit, and every credential a client sent (and the
upstream's userinfo) kept out of all that is written."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import anthropic
import pytest

from tests.support.loopback import LoopbackAPI, status
from tests.support.proxy_harness import KEY, MODEL, HeadlessProxy, Proxied, proxied_loopback
from tuiagent.proxy import server
from tuiagent.proxy.door import Door
from tuiagent.proxy.lines import call_line
from tuiagent.runs.records import ProxyTurn, Record, RefusedCall

PROMPT = [{"role": "user", "content": "hello there, who are you?"}]
BODY = json.dumps({"model": MODEL, "max_tokens": 50, "messages": PROMPT}).encode()


def raw(proxy: Proxied, head: bytes, body: bytes = BODY) -> tuple[int, dict[str, str], bytes]:
    """One request written as it is (Host and all), its answer read whole."""
    address = urlsplit(proxy.url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(head + b"content-length: %d\r\n\r\n" % len(body) + body)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()


def post_head(host: bytes | None, *extra: bytes) -> bytes:
    lines = [b"POST /v1/messages HTTP/1.1", b"x-api-key: " + KEY.encode()]
    lines += [b"content-type: application/json", *extra]
    if host is not None:
        lines.append(b"host: " + host)
    return b"\r\n".join(lines) + b"\r\n"


def port(proxy: Proxied) -> bytes:
    return str(urlsplit(proxy.url).port).encode()


@pytest.mark.parametrize(
    "host",
    [b"evil.example", b"evil.example:{port}", b"localhost:1", b"127.0.0.2:{port}", None],
)
def test_a_host_other_than_the_proxys_own_is_refused(tmp_path: Path, host: bytes | None) -> None:
    with proxied_loopback(tmp_path) as (api, proxy):
        given = host.replace(b"{port}", port(proxy)) if host is not None else None
        code, headers, body = raw(proxy, post_head(given))
        (refused,) = proxy.records("refused")
        assert api.requests == []
    error = json.loads(body)["error"]
    assert code == 403 and error["type"] == "permission_error"
    assert headers["x-should-retry"] == "false" and refused["error"] == error["message"]


@pytest.mark.parametrize("host", [b"localhost:{port}", b"127.0.0.1:{port}", b"LOCALHOST", b"[::1]"])
def test_the_proxys_own_address_and_localhost_are_served(tmp_path: Path, host: bytes) -> None:
    with proxied_loopback(tmp_path) as (_, proxy):
        code, _, _ = raw(proxy, post_head(host.replace(b"{port}", port(proxy))))
        assert len(proxy.records("turn")) == 1
    assert code == 200


def test_a_host_the_config_adds_is_served(tmp_path: Path) -> None:
    with proxied_loopback(tmp_path, app={"allowed_hosts": ("proxy.lan",)}) as (_, proxy):
        code, _, _ = raw(proxy, post_head(b"proxy.lan:" + port(proxy)))
    assert code == 200


def test_a_request_from_a_web_page_is_refused(tmp_path: Path) -> None:
    with proxied_loopback(tmp_path) as (api, proxy):
        code, _, body = raw(proxy, post_head(b"127.0.0.1", b"origin: http://evil.example"))
        preflight, _, _ = raw(
            proxy,
            b"OPTIONS /v1/messages HTTP/1.1\r\nhost: 127.0.0.1\r\norigin: http://evil.example\r\n",
            b"",
        )
        assert api.requests == []
    assert code == 403 == preflight
    assert "proxy_allowed_origins" in json.loads(body)["error"]["message"]


def test_a_web_page_the_config_allows_is_served_and_may_read_the_answer(tmp_path: Path) -> None:
    page = "http://localhost:3000"
    with proxied_loopback(tmp_path, app={"allowed_origins": (page,)}) as (_, proxy):
        preflight, allowed, _ = raw(
            proxy,
            b"OPTIONS /v1/messages HTTP/1.1\r\nhost: 127.0.0.1\r\norigin: "
            + page.encode()
            + b"\r\naccess-control-request-headers: x-api-key, content-type\r\n",
            b"",
        )
        code, headers, _ = raw(proxy, post_head(b"127.0.0.1", b"origin: " + page.encode()))
        assert len(proxy.records("turn")) == 1
    assert preflight == 204 and allowed["access-control-allow-origin"] == page
    assert allowed["access-control-allow-headers"] == "x-api-key, content-type"
    assert code == 200 and headers["access-control-allow-origin"] == page


def test_door_reads_hosts_as_a_server_would() -> None:
    door = Door.of("127.0.0.1", 8787, ("proxy.lan",))
    assert door.refusal(b"localhost:8787", None) is None
    assert door.refusal(b"[0:0::1]:8787", None) is None  # one address, two spellings
    assert door.refusal(b"proxy.lan", None) is None
    for bad in (b"localhost:8788", b"localhost:", b"localhost:x", b"[::1", b"evil:8787", b""):
        assert door.refusal(bad, None) is not None, bad


# --- connections that never finish, too many, too large --------------------------------------


@pytest.fixture
def tight(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Limits small enough to reach in a test."""
    monkeypatch.setattr(server, "HEADER_TIMEOUT_S", 0.5, raising=False)
    monkeypatch.setattr(server, "MAX_CONNECTIONS", 40, raising=False)
    yield


def _closed_by_server(sock: socket.socket, within_s: float) -> bool:
    sock.settimeout(within_s)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_half_open_connections_are_cut_and_capped(tmp_path: Path, tight: None) -> None:
    with proxied_loopback(tmp_path) as (api, proxy):
        address = urlsplit(proxy.url)
        half_open = []
        for _ in range(60):
            sock = socket.create_connection((address.hostname, address.port))
            sock.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1\r\nx-api-k")
            half_open.append(sock)
        # Those over the limit are closed at once; the rest once their head is late.
        cut_at_once = sum(_closed_by_server(s, 0.2) for s in half_open)
        time.sleep(0.6)
        cut_later = sum(_closed_by_server(s, 2.0) for s in half_open)
        code, _, _ = raw(proxy, post_head(b"127.0.0.1"))  # the proxy serves on
        for sock in half_open:
            sock.close()
        assert api.messages_calls() == 1
    assert cut_at_once >= 20
    assert cut_later == 60 and code == 200


def test_a_head_over_64_kb_is_refused(tmp_path: Path) -> None:
    with proxied_loopback(tmp_path) as (api, proxy):
        address = urlsplit(proxy.url)
        with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
            sock.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1\r\n")
            with pytest.raises(OSError):  # cut while the head is still coming
                for _ in range(200):
                    sock.sendall(b"x-filler: " + b"a" * 1000 + b"\r\n")
                    time.sleep(0.001)
            answer = sock.recv(200)
        assert api.requests == []
    assert answer.startswith(b"HTTP/1.1 431 ") or answer == b""


# --- credentials ---------------------------------------------------------------------------------

GATEWAY_TOKEN = "gw-7f3a9c2e1b4d8f6a0e5c"  # a gateway's bearer token: not sk-ant- shaped


def test_a_bearer_token_the_upstream_echoes_is_written_nowhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    echo = {
        "type": "error",
        "error": {"type": "authentication_error", "message": f"bad token Bearer {GATEWAY_TOKEN}"},
    }
    lines: list[str] = []
    api = LoopbackAPI(faults=[status(401, echo)])
    with proxied_loopback(tmp_path, api=api) as (_, proxy):

        def shown(record: Record) -> None:
            if isinstance(record, ProxyTurn | RefusedCall):  # as the dashboard shows a call
                lines.append(call_line(record))

        proxy.meter.listeners.append(shown)
        client = anthropic.Anthropic(auth_token=GATEWAY_TOKEN, base_url=proxy.url, max_retries=0)
        with pytest.raises(anthropic.AuthenticationError):
            client.messages.create(model=MODEL, max_tokens=50, messages=PROMPT)
        (attempt,) = proxy.records("attempt")
        written = proxy.log_path.read_text()
    assert "[REDACTED]" in attempt["error"]
    assert GATEWAY_TOKEN not in written + "".join(lines)
    assert all("[REDACTED]" in line for line in lines)
    assert GATEWAY_TOKEN not in capsys.readouterr().out


def test_the_upstreams_userinfo_is_shown_and_logged_nowhere(tmp_path: Path) -> None:
    with LoopbackAPI() as api:
        address = urlsplit(api.base_url)
        upstream = f"http://tuiagent-user:upstream-secret-pw@{address.hostname}:{address.port}"
        with HeadlessProxy(upstream, tmp_path) as proxy:
            proxy.client().messages.create(model=MODEL, max_tokens=50, messages=PROMPT)
            time.sleep(0.3)
            _, out, err = proxy.stop()
    # Every file it wrote (the run log, the transcript, the ledger's SQLite), as bytes.
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    shown = proxy.second_line + out + err
    for secret in ("upstream-secret-pw", "tuiagent-user"):
        assert secret not in shown and secret.encode() not in written
    assert f"upstream http://[REDACTED]@{address.hostname}" in proxy.second_line
