"""Real clients through the proxy (issue 23, item 6 and its conformance script): the leading
coding agent (`@anthropic-ai/claude-code` from npm, `claude -p`), the TypeScript SDK from
npm and the Python SDK, against a scripted 127.0.0.1 upstream.

What was found with them (claude-code 2.1.197, @anthropic-ai/sdk 1.17.0, anthropic 2.17):
every one stops at once on a 400 `invalid_request_error` (the SDKs also obey
`x-should-retry: false`, which the proxy sends on every refusal). The coding agent retries
a 529 whatever the header says, retries a 404 once and then blames the model, and shows a
403 as "Failed to authenticate": so a refusal of a Messages request is a 400.

The npm packages are installed by the tests into a cache directory (TUIAGENT_TEST_NPM_DIR,
else the user cache dir); without npm or the registry the tests that need them skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from platformdirs import user_cache_dir

from tests.support.proxy_harness import KEY, Proxied, proxy_to
from tests.support.scripted_api import ScriptedAPI

CLAUDE_CODE = "@anthropic-ai/claude-code@2.1.197"
TS_SDK = "@anthropic-ai/sdk@1.17.0"
MODEL = "claude-opus-4-8"


def _npm_dir() -> Path:
    return Path(os.environ.get("TUIAGENT_TEST_NPM_DIR") or user_cache_dir("tuiagent-tests")) / "npm"


@pytest.fixture(scope="session")
def npm_tools() -> Path:
    """A directory with the pinned npm packages installed (once; kept between runs)."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    where = _npm_dir()
    marker = where / "installed.json"
    wanted = [CLAUDE_CODE, TS_SDK]
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return where
    where.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["npm", "install", "--prefix", str(where), "--no-audit", "--no-fund", *wanted],
            capture_output=True,
            text=True,
            timeout=600,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("npm install took over 10 minutes: the registry cannot be reached")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        pytest.skip(f"npm cannot install {' '.join(wanted)}: {last}")
    marker.write_text(json.dumps(wanted))
    return where


def tool_loop(work: Path) -> Any:
    """The upstream's script: read a.txt with the agent's Read tool, then answer."""

    def answer(request: dict[str, Any]) -> list[dict[str, Any]]:
        content = request["messages"][-1].get("content")
        if isinstance(content, list) and any(b.get("type") == "tool_result" for b in content):
            return [{"type": "text", "text": "The file says hello."}]
        read = {"file_path": str(work / "a.txt")}
        return [
            {"type": "tool_use", "id": f"toolu_{time.time_ns()}", "name": "Read", "input": read}
        ]

    return answer


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "a.txt").write_text("hello from a.txt\n")
    return work


def claude(npm: Path, proxy: Proxied, work: Path, home: Path, prompt: str) -> dict[str, Any]:
    """`claude -p PROMPT` through the proxy, with a throwaway HOME; its JSON result."""
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "IS_SANDBOX": "1",  # as root, it asks for it
        "ANTHROPIC_BASE_URL": proxy.url,
        "ANTHROPIC_API_KEY": KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    done = subprocess.run(
        [
            str(npm / "node_modules" / ".bin" / "claude"),
            *("-p", prompt, "--output-format", "json", "--allowedTools", "Read"),
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        result: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"claude: {done.returncode} {done.stdout} {done.stderr}") from None
    return result


def test_the_coding_agent_runs_a_tool_loop_through_the_proxy(
    npm_tools: Path, workspace: Path, tmp_path: Path
) -> None:
    with (
        ScriptedAPI(tool_loop(workspace)) as api,
        proxy_to(api.base_url, tmp_path / "log", "5.00") as proxy,
    ):
        result = claude(npm_tools, proxy, workspace, tmp_path / "home", "what does a.txt say?")
        turns = proxy.records("turn")
    assert result["is_error"] is False and result["result"] == "The file says hello."
    assert len(api.messages()) == 2 == len(turns)
    # The Read ran: its result went up in the second call.
    sent = json.dumps(api.messages()[1]["messages"][-1])
    assert "tool_result" in sent and "hello from a.txt" in sent
    assert sum(float(t["cost_usd"]) for t in turns) == pytest.approx(result["total_cost_usd"])


def test_the_coding_agent_stops_after_the_first_refusal(
    npm_tools: Path, workspace: Path, tmp_path: Path
) -> None:
    # $0.20: its first call fits (max_tokens lowered), the second does not.
    with (
        ScriptedAPI(tool_loop(workspace)) as api,
        proxy_to(api.base_url, tmp_path / "log", "0.20") as proxy,
    ):
        result = claude(npm_tools, proxy, workspace, tmp_path / "home", "what does a.txt say?")
        refused = proxy.records("refused")
        turns = proxy.records("turn")
    assert result["is_error"] is True and result["api_error_status"] == 400
    assert "tuiagent proxy: refused before sending" in result["result"]
    assert len(refused) == 1 and len(turns) == 1 == len(api.messages())


def test_at_a_ten_cent_cap_the_coding_agent_stops_at_the_first_refusal(
    npm_tools: Path, workspace: Path, tmp_path: Path
) -> None:
    with (
        ScriptedAPI(tool_loop(workspace)) as api,
        proxy_to(api.base_url, tmp_path / "log", "0.10") as proxy,
    ):
        result = claude(npm_tools, proxy, workspace, tmp_path / "home", "what does a.txt say?")
        refused = proxy.records("refused")
    assert result["is_error"] is True and result["api_error_status"] == 400
    assert len(refused) == 1 and api.messages() == []
    assert api.requests == [], "a count_tokens asked for a request that could not fit"


def two_agents() -> tuple[Any, list[tuple[str, float, float]]]:
    """The upstream's script: the main agent starts two sub-agents (its Agent tool), each
    answers after a second, then the main agent answers. The sub-agents' calls, as
    (name, start, end), show whether they ran side by side."""
    spans: list[tuple[str, float, float]] = []

    def answer(request: dict[str, Any]) -> list[dict[str, Any]]:
        text = json.dumps(request["messages"])
        if "tool_result" in text:
            return [{"type": "text", "text": "Both done."}]
        for name in ("SUB-A", "SUB-B"):
            if name in text:
                start = time.monotonic()
                time.sleep(1.0)
                spans.append((name, start, time.monotonic()))
                return [{"type": "text", "text": f"{name} done."}]
        return [
            {
                "type": "tool_use",
                "id": f"toolu_{name}{time.time_ns()}",
                "name": "Agent",
                "input": {
                    "description": f"task {name}",
                    "prompt": f"{name}: say done",
                    "subagent_type": "general-purpose",
                },
            }
            for name in ("SUB-A", "SUB-B")
        ]

    return answer, spans


def test_under_a_one_dollar_cap_its_sub_agents_run_side_by_side(
    npm_tools: Path, workspace: Path, tmp_path: Path
) -> None:
    # Each call asks 64,000 output tokens of Opus ($1.60 at worst): without fair holds the
    # first sub-agent's call would hold the whole cap and the second be refused.
    answer, spans = two_agents()
    with ScriptedAPI(answer) as api, proxy_to(api.base_url, tmp_path / "log", "1.00") as proxy:
        result = claude(npm_tools, proxy, workspace, tmp_path / "home", "run two agents")
        refused = proxy.records("refused")
        turns = proxy.records("turn")
    assert result["is_error"] is False and result["result"] == "Both done."
    assert refused == [] and len(turns) == 4
    (a, a_start, a_end), (b, b_start, b_end) = sorted(spans)
    assert (a, b) == ("SUB-A", "SUB-B")
    assert a_start < b_end and b_start < a_end  # at the upstream at the same time
    assert all(t["max_tokens"] < t["max_tokens_requested"] for t in turns)


TS_CALL = """
import Anthropic from "@anthropic-ai/sdk";
const client = new Anthropic({ baseURL: process.env.BASE, apiKey: process.env.KEY });
try {
  await client.messages.create({ model: process.env.MODEL, max_tokens: 4096,
    messages: [{ role: "user", content: "hello" }] });
  console.log(JSON.stringify({ ok: true }));
} catch (e) {
  console.log(JSON.stringify({ status: e.status, message: e.error?.error?.message }));
}
"""


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[tuple[ScriptedAPI, Proxied]]:
    """A proxy whose cap is already spent: every Messages request is refused."""
    answer = [{"type": "text", "text": "hi"}]
    with (
        ScriptedAPI(lambda _: answer) as api,
        proxy_to(api.base_url, tmp_path / "log", "0.01") as proxy,
    ):
        client = anthropic.Anthropic(api_key=KEY, base_url=proxy.url, max_retries=0)
        client.messages.create(
            model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "x" * 9000}]
        )
        yield api, proxy


def test_the_typescript_sdk_does_not_retry_a_refusal(
    npm_tools: Path, capped: tuple[ScriptedAPI, Proxied], tmp_path: Path
) -> None:
    api, proxy = capped
    script = npm_tools / "call.mjs"
    script.write_text(TS_CALL)
    env = {**os.environ, "BASE": proxy.url, "KEY": KEY, "MODEL": MODEL}
    done = subprocess.run(
        ["node", str(script)], capture_output=True, text=True, timeout=120, env=env
    )
    answer = json.loads(done.stdout)
    assert answer["status"] == 400 and "refused before sending" in answer["message"]
    assert len(proxy.records("refused")) == 1  # its default 2 retries not used
    assert len(api.messages()) == 1  # the call that spent the cap


def test_the_python_sdk_does_not_retry_a_refusal(capped: tuple[ScriptedAPI, Proxied]) -> None:
    api, proxy = capped
    client = anthropic.Anthropic(api_key=KEY, base_url=proxy.url)  # its default retries
    with pytest.raises(anthropic.BadRequestError, match="refused before sending"):
        client.messages.create(
            model=MODEL, max_tokens=4096, messages=[{"role": "user", "content": "hi"}]
        )
    assert len(proxy.records("refused")) == 1 and len(api.messages()) == 1
