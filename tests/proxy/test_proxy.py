"""Proxy mode (issue 17): the real SDK through `tuiagent proxy` to a 127.0.0.1 upstream."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from tests.support.cli import cli_env, run_cli
from tests.support.loopback import (
    MID_STREAM_ERROR,
    OVERLOADED,
    RATE_LIMITED,
    Fault,
    LoopbackAPI,
    status,
)
from tests.support.proxy_harness import KEY, MODEL, Proxied, proxied_loopback, proxy_to
from tuiagent.cost.pricing import Pricer
from tuiagent.llm.tokens import TokenUsage
from tuiagent.offline import OfflineModel

PROMPT = [{"role": "user", "content": "hello there, who are you?"}]
TOOLS = [
    {
        "name": "list_dir",
        "description": "List a directory",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
    }
]
LONG_SYSTEM = "You are a careful assistant for a large codebase. " * 300  # > 1,024 tokens


def sdk(base_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=KEY, base_url=base_url, max_retries=0)


def price(usage: Any) -> Decimal:
    return Pricer().price(MODEL, TokenUsage.from_api(usage.model_dump())).total


OFFLINE_IDS = re.compile(r"(msg|toolu|req)_offline\w+")


def without_ids(message: anthropic.types.Message) -> str:
    """The offline model numbers its ids by the requests it has seen (count_tokens too)."""
    return OFFLINE_IDS.sub("ID", message.model_dump_json())


# --- pass-through, exact ------------------------------------------------------------------


def test_the_sdk_gets_the_same_answers_through_the_proxy_and_each_call_is_priced(
    tmp_path: Path,
) -> None:
    calls = [
        {"messages": PROMPT},
        {"messages": [{"role": "user", "content": "list the files please"}], "tools": TOOLS},
    ]
    with LoopbackAPI() as direct_api, proxied_loopback(tmp_path) as (_, proxy):
        direct, through = sdk(direct_api.base_url), sdk(proxy.url)
        answers = []
        for client in (direct, through):
            got = []
            for kwargs in calls:
                got.append(client.messages.create(model=MODEL, max_tokens=400, **kwargs))
                with client.messages.stream(model=MODEL, max_tokens=400, **kwargs) as stream:
                    got.append(stream.get_final_message())
            got.append(client.messages.count_tokens(model=MODEL, messages=PROMPT))
            answers.append(got)
        assert [without_ids(m) for m in answers[1][:-1]] == [
            without_ids(m) for m in answers[0][:-1]
        ]
        assert answers[1][-1] == answers[0][-1]
        assert answers[1][2].stop_reason == "tool_use"
        turns = proxy.records("turn")
    assert len(turns) == 4  # count_tokens is free and not recorded
    for record, message in zip(turns, answers[1][:-1], strict=True):
        assert record["source"] == "proxy" and record["client"].startswith("Anthropic/Python")
        assert record["message_id"] == message.id
        assert record["output_tokens"] == message.usage.output_tokens
        assert Decimal(str(record["cost_usd"])) == price(message.usage) > 0
    assert [r["stream"] for r in turns] == [False, True, False, True]
    total = sum(price(m.usage) for m in answers[1][:-1])
    assert Decimal(str(turns[-1]["cumulative_cost_usd"])) == total


async def test_the_async_sdk_streamed_and_not(tmp_path: Path) -> None:
    with proxied_loopback(tmp_path) as (_, proxy):
        client = anthropic.AsyncAnthropic(api_key=KEY, base_url=proxy.url, max_retries=0)
        whole = await client.messages.create(model=MODEL, max_tokens=300, messages=PROMPT)
        async with client.messages.stream(model=MODEL, max_tokens=300, messages=PROMPT) as s:
            streamed = await s.get_final_message()
        counted = await client.messages.count_tokens(model=MODEL, messages=PROMPT)
        await client.close()
        turns = proxy.records("turn")
    assert [b.text for b in whole.content] == [b.text for b in streamed.content]  # type: ignore[union-attr]
    assert counted.input_tokens > 0
    assert [r["message_id"] for r in turns] == [whole.id, streamed.id]
    assert [Decimal(str(r["cost_usd"])) for r in turns] == [
        price(whole.usage),
        price(streamed.usage),
    ]


def _raw_stream(base_url: str) -> tuple[int, dict[str, str], bytes]:
    body = {"model": MODEL, "max_tokens": 300, "stream": True, "messages": PROMPT}
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    with httpx2.Client() as client:
        r = client.post(base_url + "/v1/messages", json=body, headers=headers)
        return r.status_code, dict(r.headers), r.content


def test_the_stream_comes_back_byte_for_byte_and_the_clients_headers_go_upstream(
    tmp_path: Path,
) -> None:
    with LoopbackAPI() as direct_api, proxied_loopback(tmp_path) as (upstream, proxy):
        code, headers, through = _raw_stream(proxy.url)
        _, _, direct = _raw_stream(direct_api.base_url)
        sdk(proxy.url).with_options(default_headers={"anthropic-beta": "beta-x"}).messages.create(
            model=MODEL, max_tokens=50, messages=PROMPT
        )
    ids = re.compile(OFFLINE_IDS.pattern.encode())
    assert code == 200 and headers["content-type"].startswith("text/event-stream")
    assert headers["request-id"].startswith("req_offline")
    assert ids.sub(b"ID", through) == ids.sub(b"ID", direct)
    sent = [(path, h) for path, h, _ in upstream.requests if path == "/v1/messages"]
    assert len(sent) == 2
    (_, raw), (_, by_sdk) = sent  # the raw client sends x-api-key; this SDK a bearer token
    assert raw["x-api-key"] == KEY and raw["anthropic-version"] == "2023-06-01"
    assert by_sdk["authorization"] == f"Bearer {KEY}" and by_sdk["anthropic-beta"] == "beta-x"
    assert raw["host"] == upstream.base_url.removeprefix("http://")
    assert raw["accept-encoding"] == "identity"


def test_the_key_is_never_logged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with proxied_loopback(tmp_path) as (_, proxy):
        sdk(proxy.url).messages.create(model=MODEL, max_tokens=50, messages=PROMPT)
        text = proxy.log_path.read_text()
    assert KEY not in text and "x-api-key" not in text
    out = capsys.readouterr()
    assert KEY not in out.out + out.err


# --- the hard cap -------------------------------------------------------------------------


def test_a_request_that_cannot_fit_is_refused_before_it_leaves(tmp_path: Path) -> None:
    with proxied_loopback(tmp_path, cap="0.0001") as (upstream, proxy):
        with pytest.raises(anthropic.BadRequestError) as caught:
            sdk(proxy.url).messages.create(model=MODEL, max_tokens=4000, messages=PROMPT)
        assert upstream.messages_calls() == 0
        refused = proxy.records("refused")
    response = caught.value.response
    assert response.status_code == 400 and response.headers["x-should-retry"] == "false"
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    message = body["error"]["message"]
    assert message.startswith("tuiagent proxy: ") and "cap $0.0001, " in message
    assert "spent $0.0000" in message and "raise it with F3 or --max-cost" in message
    assert len(refused) == 1 and KEY not in json.dumps(refused)


def test_a_request_that_fits_with_fewer_tokens_has_its_max_tokens_lowered(
    tmp_path: Path,
) -> None:
    # $0.01 at $15/Mtok output leaves room for about 660 tokens, not 4,000.
    with proxied_loopback(tmp_path, cap="0.01") as (upstream, proxy):
        message = sdk(proxy.url).messages.create(model=MODEL, max_tokens=4000, messages=PROMPT)
        (turn,) = proxy.records("turn")
        sent = json.loads(upstream.requests[-1][2])
    assert 256 <= sent["max_tokens"] == turn["max_tokens"] < 4000
    assert turn["max_tokens_requested"] == 4000
    assert Decimal(str(turn["reserved_usd"])) <= Decimal("0.01")
    assert message.usage.output_tokens <= sent["max_tokens"]


def test_concurrent_clients_never_pass_the_cap_together(tmp_path: Path) -> None:
    cap = Decimal("0.05")
    # Each asks for 1,000 output tokens ($0.015 at worst): 16 of them are about 5x the cap.
    api = LoopbackAPI(
        OfflineModel(fill_max_tokens=True), faults=[Fault("slow", delay_s=0.002)] * 16
    )
    barrier = threading.Barrier(16)

    def one(_: int) -> tuple[str, Any]:
        client = sdk(proxy.url)
        barrier.wait()
        try:  # streamed: the upstream's events come slowly, so the calls overlap
            with client.messages.stream(model=MODEL, max_tokens=1000, messages=PROMPT) as s:
                return "answered", s.get_final_message()
        except anthropic.BadRequestError as exc:
            return "refused", exc.response

    with proxied_loopback(tmp_path, cap=str(cap), api=api) as (_, proxy):
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(one, range(16)))
        records = proxy.records("turn", "attempt")
        settled = proxy.budget.settled
    answered = [m for kind, m in results if kind == "answered"]
    refused = [r for kind, r in results if kind == "refused"]
    billed = sum((price(m.usage) for m in answered), Decimal(0))
    worst = sum(
        (Decimal(str(r["reserved_usd"])) for r in records), Decimal(0)
    )  # what was ever held
    assert answered and refused
    assert billed <= cap and worst <= cap
    assert billed == settled == sum(Decimal(str(r["cost_usd"])) for r in records)
    for response in refused:
        assert response.status_code == 400 and response.headers["x-should-retry"] == "false"


# --- faults from upstream -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "code", "etype"),
    [
        (status(429, RATE_LIMITED, retry_after="7"), 429, "rate_limit_error"),
        (status(529, OVERLOADED, x_should_retry="true"), 529, "overloaded_error"),
    ],
)
def test_error_answers_reach_the_client_as_sent_and_bill_nothing(
    tmp_path: Path, fault: Fault, code: int, etype: str
) -> None:
    with proxied_loopback(tmp_path, api=LoopbackAPI(faults=[fault])) as (_, proxy):
        with pytest.raises(anthropic.APIStatusError) as caught:
            sdk(proxy.url).messages.create(model=MODEL, max_tokens=300, messages=PROMPT)
        (attempt,) = proxy.records("attempt")
        assert proxy.budget.in_flight == 0
    response = caught.value.response
    assert response.status_code == code and response.json() == fault.body
    for header, value in fault.headers.items():
        assert response.headers[header] == value
    assert attempt["status"] == code and attempt["error_type"] == etype
    assert attempt["cost_usd"] == 0 and attempt["usage_unknown"] is False


def test_a_stream_cut_by_the_upstream_reaches_the_client_cut_and_bills_what_came(
    tmp_path: Path,
) -> None:
    ids = re.compile(OFFLINE_IDS.pattern.encode())
    direct_api = LoopbackAPI(faults=[Fault("drop")])
    upstream = LoopbackAPI(faults=[Fault("drop")])
    with direct_api, proxied_loopback(tmp_path, api=upstream) as (_, proxy):
        _, _, direct = _raw_stream(direct_api.base_url)
        _, _, through = _raw_stream(proxy.url)
        (attempt,) = proxy.records("attempt")
    assert ids.sub(b"ID", through) == ids.sub(b"ID", direct)
    assert b"message_start" in through and b"message_stop" not in through
    assert attempt["error_type"] == "connection_error" and attempt["usage_unknown"] is False
    assert attempt["input_tokens"] > 0 and attempt["output_tokens"] >= 1
    usage = TokenUsage(input_tokens=attempt["input_tokens"], output_tokens=attempt["output_tokens"])
    assert Decimal(str(attempt["cost_usd"])) == Pricer().price(MODEL, usage).total > 0


def test_an_error_event_mid_stream_reaches_the_client_and_bills_the_usage_seen(
    tmp_path: Path,
) -> None:
    api = LoopbackAPI(faults=[Fault("stream_error", body=MID_STREAM_ERROR)])
    with proxied_loopback(tmp_path, api=api) as (_, proxy):
        stream = sdk(proxy.url).messages.stream(model=MODEL, max_tokens=300, messages=PROMPT)
        with pytest.raises(anthropic.APIStatusError) as caught, stream as events:
            events.get_final_message()
        (attempt,) = proxy.records("attempt")
    assert "overloaded" in str(caught.value).lower()
    assert attempt["status"] == 200 and attempt["error_type"] == "overloaded_error"
    assert attempt["input_tokens"] > 0 and Decimal(str(attempt["cost_usd"])) > 0


def test_usage_that_cannot_be_billed_keeps_the_worst_case(tmp_path: Path) -> None:
    api = LoopbackAPI(faults=[Fault("bad_usage", value="1e30", at="message_start")])
    with proxied_loopback(tmp_path, api=api) as (_, proxy):
        status, _, body = _raw_stream(proxy.url)
        (attempt,) = proxy.records("attempt")
    assert status == 200 and b"1e30" in body  # passed on as the upstream sent it
    assert attempt["error_type"] == "bad_usage" and attempt["usage_unknown"] is True
    assert attempt["cost_usd"] == attempt["reserved_usd"] > 0


def test_nonsense_output_after_a_good_message_start_keeps_the_most_output_allowed(
    tmp_path: Path,
) -> None:
    """The agent's rule: message_start billed the input; the output is unknown."""
    api = LoopbackAPI(faults=[Fault("bad_usage", value="1e30", at="message_delta")])
    with proxied_loopback(tmp_path, api=api) as (_, proxy):
        _raw_stream(proxy.url)
        (attempt,) = proxy.records("attempt")
    assert attempt["error_type"] == "bad_usage" and attempt["usage_unknown"] is False
    assert attempt["output_unknown"] is True and attempt["input_tokens"] > 0
    assert attempt["output_tokens"] == attempt["max_tokens"]
    usage = TokenUsage(input_tokens=attempt["input_tokens"], output_tokens=attempt["max_tokens"])
    assert Decimal(str(attempt["cost_usd"])) == Pricer().price(MODEL, usage).total


def _black_hole() -> tuple[socket.socket, threading.Thread]:
    """An upstream that reads each request and hangs up without a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


def test_no_usage_seen_keeps_the_worst_case(tmp_path: Path) -> None:
    hole, _ = _black_hole()
    url = f"http://127.0.0.1:{hole.getsockname()[1]}"
    try:
        with proxy_to(url, tmp_path) as proxy:
            with pytest.raises(anthropic.APIStatusError) as caught:
                sdk(proxy.url).messages.create(model=MODEL, max_tokens=300, messages=PROMPT)
            (attempt,) = proxy.records("attempt")
            settled = proxy.budget.settled
    finally:
        hole.close()
    assert caught.value.status_code == 502
    assert attempt["usage_unknown"] is True and attempt["input_count_source"] == "estimate"
    assert attempt["cost_usd"] == attempt["reserved_usd"] > 0
    assert settled == Decimal(str(attempt["reserved_usd"]))


# --- auto-cache, the report ---------------------------------------------------------------


def test_auto_cache_adds_breakpoints_only_with_the_flag(tmp_path: Path) -> None:
    def twice(proxy: Proxied) -> list[dict[str, Any]]:
        for _ in range(2):
            sdk(proxy.url).messages.create(
                model=MODEL, max_tokens=100, system=LONG_SYSTEM, messages=PROMPT
            )
        return proxy.records("turn")

    with proxied_loopback(tmp_path / "plain") as (upstream, proxy):
        plain = twice(proxy)
        assert "cache_control" not in upstream.requests[-1][2].decode()
    with proxied_loopback(tmp_path / "auto", auto_cache=True) as (upstream, proxy):
        cached = twice(proxy)
        assert "cache_control" in upstream.requests[-1][2].decode()
    assert all(r["cache_read_input_tokens"] == 0 for r in plain)
    assert cached[0]["cache_creation_input_tokens"] > 0 and cached[0]["auto_cache"] is True
    assert cached[1]["cache_read_input_tokens"] > 0
    assert cached[1]["cost_usd"] < plain[1]["cost_usd"]


def test_the_report_reads_the_proxys_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tuiagent.cli import main

    with proxied_loopback(tmp_path / "logs", api=LoopbackAPI(faults=[status(529, OVERLOADED)])) as (
        _,
        proxy,
    ):
        client = sdk(proxy.url)
        with pytest.raises(anthropic.APIStatusError):
            client.messages.create(model=MODEL, max_tokens=300, messages=PROMPT)
        for _ in range(2):
            client.messages.create(model=MODEL, max_tokens=300, messages=PROMPT)
    total = proxy.records("run_end")[0]["total_cost_usd"]
    capsys.readouterr()
    assert main(["report", "--log-dir", str(tmp_path / "logs"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (run,) = report["runs"]
    assert run["turns"] == 2 and run["failed_attempts"] == 1
    assert run["cost_usd"] == pytest.approx(total) and total > 0
    assert [(t["tier"], t["calls"]) for t in report["by_tier"]] == [("proxy", 3)]
    assert main(["report", "--log-dir", str(tmp_path / "logs")]) == 0
    assert f"${total:.6f} in all" in capsys.readouterr().out
    # The transcript keeps each proxied request: replay resends one to another model.
    assert (
        main(
            [
                "replay",
                "proxy-run",
                "--turn",
                "2",
                "--offline",
                "--model",
                "claude-haiku-4-5",
                "--log-dir",
                str(tmp_path / "logs"),
            ]
        )
        == 0
    )
    assert "claude-haiku-4-5" in capsys.readouterr().out


def test_the_budget_releases_every_hold(tmp_path: Path) -> None:
    async def many() -> None:
        client = anthropic.AsyncAnthropic(api_key=KEY, base_url=proxy.url, max_retries=0)
        await asyncio.gather(
            *(
                client.messages.create(model=MODEL, max_tokens=200, messages=PROMPT)
                for _ in range(6)
            )
        )
        await client.close()

    with proxied_loopback(tmp_path) as (_, proxy):
        asyncio.run(many())
        snapshot = proxy.budget.snapshot()
    assert snapshot.holds == 0 and snapshot.in_flight == 0 and snapshot.settled > 0


# --- the command ----------------------------------------------------------------------------


def test_headless_proxy_says_where_it_listens_then_one_line_per_call(tmp_path: Path) -> None:
    with LoopbackAPI() as api:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "tuiagent", "proxy", "--port", "0", "--no-ui"),
                *("--upstream", api.base_url, "--log-dir", str(tmp_path), "--max-cost", "0.50"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()
        listening = re.fullmatch(r"tuiagent proxy: listening on (http://127\.0\.0\.1:\d+)\n", first)
        assert listening, first
        assert "cap $0.50" in proc.stdout.readline()
        message = sdk(listening.group(1)).messages.create(
            model=MODEL, max_tokens=300, messages=PROMPT
        )
        line = proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and err == ""  # stopped by Ctrl-C, as the CLI says
    assert line.startswith(f"#1 Anthropic/Python sonnet-4-5 in {message.usage.input_tokens} ")
    assert f"${price(message.usage):.6f}" in line and "[end_turn]" in line
    (log,) = tmp_path.glob("*.jsonl")
    records = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["type"] for r in records] == ["run_start", "hold", "turn", "run_end"]
    assert records[1]["hold_id"] == records[2]["hold_id"]  # held before it was sent
    assert records[0]["source"] == "proxy" and records[0]["limits"]["max_cost_usd"] == 0.5
    assert KEY not in first + line + out + err + log.read_text()


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (["--port", "70000"], "--port"),
        (["--upstream", "ftp://example"], "--upstream"),
        (["--max-cost", "lots"], "--max-cost"),
        (["--colour"], "--colour"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(tmp_path: Path, flags: list[str], names: str) -> None:
    result = run_cli("proxy", "--no-ui", "--log-dir", str(tmp_path), *flags)
    assert result.returncode == 2
    assert names in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == "" and not list(tmp_path.glob("*.jsonl"))


def test_a_port_in_use_is_one_line_and_no_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("proxy", "--no-ui", "--port", str(port), "--log-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"tuiagent: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert not list(tmp_path.glob("*.jsonl"))


# --- OpenTelemetry --------------------------------------------------------------------------


class _Collector:
    """An OTLP/HTTP collector on 127.0.0.1: keeps what is POSTed, by path."""

    def __init__(self) -> None:
        received: list[tuple[str, bytes]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                received.append((self.path, body))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_every_call_goes_live_to_the_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from tuiagent.proxy.otel import live_export

    collector = _Collector()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    try:
        with proxied_loopback(tmp_path, api=LoopbackAPI(faults=[status(529, OVERLOADED)])) as (
            _,
            proxy,
        ):
            export = live_export(proxy.meter)
            assert export is not None
            client = sdk(proxy.url)
            with pytest.raises(anthropic.APIStatusError):
                client.messages.create(model=MODEL, max_tokens=300, messages=PROMPT)
            message = client.messages.create(model=MODEL, max_tokens=300, messages=PROMPT)
            export.shutdown()  # flushes
    finally:
        collector.close()
    traces = [b for path, b in collector.received if path == "/v1/traces"]
    metrics = [b for path, b in collector.received if path == "/v1/metrics"]
    assert traces and metrics
    spans = [
        span
        for body in traces
        for rs in ExportTraceServiceRequest.FromString(body).resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]
    assert [s.name for s in spans] == [f"chat {MODEL}"] * 2
    failed, ok = ({a.key: a.value for a in s.attributes} for s in spans)
    assert failed["error.type"].string_value == "overloaded_error"
    assert ok["gen_ai.usage.output_tokens"].int_value == message.usage.output_tokens
    assert ok["gen_ai.response.id"].string_value == message.id
    assert ok["tuiagent.cost_usd"].double_value == float(price(message.usage))
    assert ok["tuiagent.source"].string_value == "proxy"
    names = {
        m.name
        for body in metrics
        for rm in ExportMetricsServiceRequest.FromString(body).resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert {
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.duration",
        "tuiagent.cost",
    } <= names


def test_without_the_otel_extra_one_line_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tuiagent.proxy.otel import live_export

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.metrics", None)
    with proxied_loopback(tmp_path) as (_, proxy):
        assert live_export(proxy.meter) is None
        assert proxy.meter.listeners == []
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "tuiagent proxy: OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed; nothing is exported (install it with: pip install 'tuiagent[otel]')"
    ]
