"""`tuiagent serve` (the offline model over HTTP) and `tuiagent proxy --offline` (the proxy in
front of it), driven by real clients with no key: the Python SDK, the TypeScript SDK and the
leading coding agent (both from npm, installed by the test; skipped when npm cannot be
reached)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anthropic
import httpx2
import pytest

from tests.support.cli import cli_env, run_cli, start_cli
from tests.support.npm import CLAUDE_CODE, TYPESCRIPT_SDK, installed
from tuiagent.offline import OfflineModel
from tuiagent.offline.server import MAX_REQUEST_BYTES, OfflineAPI
from tuiagent.proxy.server import ProxyServer, bind

MODEL = "claude-haiku-4-5"
LIST_TOOL = {
    "name": "list_dir",
    "description": "List a folder of the workspace",
    "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
}


@contextmanager
def command(*args: str) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """`tuiagent ARGS` started; its process, the URL of its first line and its second line.
    Stopped with Ctrl-C after the test."""
    proc = start_cli(*args)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    try:
        listening = re.fullmatch(r"tuiagent (?:serve|proxy): listening on (http://\S+)\n", first)
        assert listening, first + (proc.stderr.read() if proc.stderr else "")
        yield proc, listening.group(1), proc.stdout.readline()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def sdk(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key="any-key-will-do", max_retries=0)


def test_serve_says_where_and_that_it_is_simulated_then_answers_the_sdk() -> None:
    with command("serve", "--port", "0") as (proc, url, second):
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url) and not url.endswith(":0")
        assert "simulated" in second and "any key will do" in second
        client = sdk(url)
        raw = client.messages.with_raw_response.create(
            model=MODEL, max_tokens=200, messages=[{"role": "user", "content": "hello"}]
        )
        message = raw.parse()
        assert raw.headers["x-tuiagent-simulated"] == "true"
        assert "simulated" in message.content[0].text  # type: ignore[union-attr]
        counted = client.messages.count_tokens(
            model=MODEL, messages=[{"role": "user", "content": "hello"}]
        )
        assert counted.input_tokens == message.usage.input_tokens > 0
        with client.messages.stream(
            model=MODEL, max_tokens=200, messages=[{"role": "user", "content": "hello"}]
        ) as stream:
            streamed = stream.get_final_message()
        assert streamed.content[0].text == message.content[0].text  # type: ignore[union-attr]
        assert streamed.stop_reason == "end_turn"
        assert MODEL in [m.id for m in client.models.list()]
        with pytest.raises(anthropic.BadRequestError, match="max_tokens: Field required"):
            client.post("/v1/messages", cast_to=object, body={"model": MODEL, "messages": []})
        # Every answer says it is simulated, errors too.
        refused = httpx2.post(f"{url}/v1/messages", content=b"{}", timeout=10)
    assert refused.status_code == 401 and refused.headers["x-tuiagent-simulated"] == "true"
    assert refused.json()["error"] == {
        "type": "authentication_error",
        "message": "x-api-key header is required",
    }
    assert proc.returncode == 130


@pytest.fixture
def slow_server() -> Iterator[str]:
    """The offline model served in this process, streaming 200 tokens a second."""
    api = OfflineAPI(OfflineModel(tokens_per_second=200))
    server = ProxyServer(api, bind("127.0.0.1", 0)).start()
    yield server.url
    server.stop()


def test_a_body_over_the_apis_32_mb_is_refused_413(slow_server: str) -> None:
    body = b'{"model": "claude-haiku-4-5", "pad": "' + b"x" * MAX_REQUEST_BYTES + b'"}'
    refused = httpx2.post(
        f"{slow_server}/v1/messages", content=body, headers={"x-api-key": "k"}, timeout=60
    )
    assert refused.status_code == 413
    assert refused.json()["error"] == {
        "type": "request_too_large",
        "message": "Request exceeds the maximum allowed number of bytes.",
    }


def test_a_client_that_leaves_mid_stream_leaves_the_server_serving(slow_server: str) -> None:
    request = {
        "model": MODEL,
        "max_tokens": 2000,
        "stream": True,
        "messages": [{"role": "user", "content": "hello " * 50}],
    }
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    for _ in range(3):
        with httpx2.stream(
            "POST", f"{slow_server}/v1/messages", json=request, headers=headers, timeout=30
        ) as streamed:
            first = next(streamed.iter_raw())
        assert first.startswith(b"event: message_start")  # then the client hung up
    answer = sdk(slow_server).messages.create(
        model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hello"}]
    )
    assert answer.stop_reason in ("end_turn", "max_tokens")


def test_serve_on_a_port_in_use_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_cli("serve", "--port", str(taken.getsockname()[1]))
    assert result.returncode == 2 and result.stdout == ""
    assert "cannot listen on 127.0.0.1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_bad_port_is_one_line_and_exit_2() -> None:
    result = run_cli("serve", "--port", "70000")
    assert result.returncode == 2 and "--port" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_proxy_offline_meters_a_keyless_sdk_tool_loop(tmp_path: Path) -> None:
    args = ("proxy", "--offline", "--no-ui", "--port", "0", "--log-dir", str(tmp_path))
    with command(*args) as (proc, url, second):
        assert "upstream the offline model at http://127.0.0.1:" in second
        assert "(simulated)" in second
        client = sdk(url)
        messages: list[anthropic.types.MessageParam] = [
            {"role": "user", "content": "list the files here"}
        ]
        first = client.messages.create(
            model=MODEL, max_tokens=300, messages=messages, tools=[LIST_TOOL]
        )
        assert first.stop_reason == "tool_use"
        call = next(b for b in first.content if b.type == "tool_use")
        messages += [
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": call.id,
                        "content": "file 12 notes.txt\nfile 40 main.py",
                    }
                ],
            },
        ]
        with client.messages.stream(
            model=MODEL, max_tokens=300, messages=messages, tools=[LIST_TOOL]
        ) as stream:
            answer = stream.get_final_message()
        assert "notes.txt" in answer.content[0].text  # type: ignore[union-attr]
        assert proc.stdout is not None
        lines = [proc.stdout.readline(), proc.stdout.readline()]
    assert lines[0].startswith("#1 Anthropic/Python haiku-4-5 ") and "[tool_use" in lines[0]
    assert lines[1].startswith("#2 Anthropic/Python haiku-4-5 ") and "[end_turn" in lines[1]
    (log,) = tmp_path.glob("*.jsonl")
    records = [json.loads(x) for x in log.read_text().splitlines()]
    assert records[0]["type"] == "run_start" and records[0]["simulated"] is True
    turns = [r for r in records if r["type"] == "turn"]
    assert [t["output_tokens"] for t in turns] == [
        first.usage.output_tokens,
        answer.usage.output_tokens,
    ]
    assert all(float(t["cost_usd"]) > 0 for t in turns)


def test_proxy_offline_with_an_upstream_too_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli(
        "proxy",
        "--offline",
        "--no-ui",
        "--upstream",
        "http://127.0.0.1:9",
        "--log-dir",
        str(tmp_path),
    )
    assert result.returncode == 2 and "--offline and --upstream" in result.stderr
    assert not list(tmp_path.glob("*.jsonl"))


TS_CLIENT = """
const Anthropic = require("@anthropic-ai/sdk");
const client = new Anthropic({ baseURL: process.env.BASE_URL, apiKey: "any-key-will-do", maxRetries: 0 });
(async () => {
  const params = { model: "claude-haiku-4-5", max_tokens: 200, messages: [{ role: "user", content: "hello" }] };
  const made = await client.messages.create(params);
  const streamed = await client.messages.stream(params).finalMessage();
  let refused = null;
  try { await client.messages.create({ ...params, max_tokens: -1 }); }
  catch (err) { refused = { status: err.status, type: err.error?.error?.type }; }
  console.log(JSON.stringify({ made, streamed, refused }));
})();
"""


def test_typescript_sdk_through_proxy_offline(tmp_path: Path) -> None:
    modules = installed(TYPESCRIPT_SDK)
    (tmp_path / "node_modules").symlink_to(modules)
    (tmp_path / "client.cjs").write_text(TS_CLIENT)
    logs = tmp_path / "logs"
    with command("proxy", "--offline", "--no-ui", "--port", "0", "--log-dir", str(logs)) as (
        proc,
        url,
        _,
    ):
        done = subprocess.run(
            ["node", "client.cjs"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env={**cli_env(), "BASE_URL": url},
        )
        assert done.returncode == 0, done.stderr
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]
    out = json.loads(done.stdout)
    assert out["made"]["content"] == out["streamed"]["content"]
    assert "simulated" in out["made"]["content"][0]["text"]
    assert out["refused"] == {"status": 400, "type": "invalid_request_error"}
    assert all(line.startswith(f"#{i + 1} Anthropic/JS haiku-4-5 ") for i, line in enumerate(lines))


def test_the_coding_agent_runs_a_tool_loop_keyless_through_proxy_offline(tmp_path: Path) -> None:
    """`claude -p` with no key of its own: it lists the files through its own Bash tool."""
    modules = installed(CLAUDE_CODE)
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("remember the milk\n")
    (work / "main.py").write_text("print('hi')\n")
    logs = tmp_path / "logs"
    with command("proxy", "--offline", "--no-ui", "--port", "0", "--log-dir", str(logs)) as (
        _,
        url,
        _,
    ):
        home = tempfile.mkdtemp(dir=tmp_path)
        env = {
            **cli_env(),
            "HOME": home,
            "IS_SANDBOX": "1",  # the agent refuses to run as root without it
            "ANTHROPIC_BASE_URL": url,
            "ANTHROPIC_API_KEY": "offline",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # no telemetry: no network
            "DISABLE_AUTOUPDATER": "1",
        }
        done = subprocess.run(
            [str(modules / ".bin" / "claude"), "-p", "list the files here"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "main.py" in done.stdout and "notes.txt" in done.stdout, done.stdout
    (log,) = logs.glob("*.jsonl")
    records = [json.loads(x) for x in log.read_text().splitlines()]
    turns = [r for r in records if r["type"] == "turn"]
    assert [r for r in records if r["type"] in ("attempt", "refused")] == []
    assert any(t["stop_reason"] == "tool_use" for t in turns)
    assert turns[-1]["stop_reason"] == "end_turn" and all(
        t["client"] == "claude-cli/2.1.197" for t in turns
    )
    assert sorted(os.listdir(work)) == ["main.py", "notes.txt"]  # it wrote nothing here


def test_the_proxy_says_its_total_and_its_sessions_when_it_stops(tmp_path: Path) -> None:
    """Ctrl-C: the calls, the spend against the cap, and each session's calls, spend and
    sub-agents, on stdout after the last call's line."""
    proc = start_cli(*("proxy", "--offline", "--no-ui", "--port", "0", "--log-dir", str(tmp_path)))
    assert proc.stdout is not None
    url = proc.stdout.readline().split()[-1]
    proc.stdout.readline()
    try:
        for headers in (
            {"x-claude-code-session-id": "sess-a"},
            {"x-claude-code-session-id": "sess-a", "x-claude-code-agent-id": "sub-1"},
            {"x-claude-code-session-id": "sess-b"},
        ):
            client = anthropic.Anthropic(
                base_url=url, api_key="k", max_retries=0, default_headers=headers
            )
            client.messages.create(
                model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "hi"}]
            )
        refused = httpx2.post(
            url + "/v1/messages",
            json={"model": MODEL, "max_tokens": "100", "messages": []},
            headers={"x-api-key": "k", "x-claude-code-session-id": "sess-b"},
        )
        assert refused.status_code == 400
        for _ in range(4):
            proc.stdout.readline()  # each call's line
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    lines = out.splitlines()
    assert lines[0].startswith("tuiagent proxy: stopped. 4 call(s) (1 refused), $0.00"), out
    assert lines[0].endswith(
        "spent of the cap $1.00 (the offline model: simulated, nothing billed)"
    )
    assert lines[1].startswith("  Anthropic/Python session sess-a: 2 call(s), $0.00")
    assert lines[1].endswith(", 1 sub-agent(s), cache hit 0%")
    assert lines[2].startswith("  Anthropic/Python session sess-b: 2 call(s), $0.00")  # refused too
    assert lines[3].startswith("tuiagent proxy: log ") and lines[3].endswith(".jsonl")
    assert proc.returncode == 130 and "Traceback" not in err
