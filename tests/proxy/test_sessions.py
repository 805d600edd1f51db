"""Sessions and sub-agents in the proxy's records (issue 26, item 2): each call names its
client session and agent, and why it missed the cache, computed from the same session's
previous request; `tuiagent report` groups proxied calls by session, then agent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.cli import run_cli
from tests.support.proxy_harness import Proxied, proxy_to
from tuiagent.llm.tokens import TokenUsage
from tuiagent.offline.server import OfflineAPI
from tuiagent.proxy.causes import MissCauses, session_key
from tuiagent.proxy.server import ProxyServer, bind
from tuiagent.report.sessions import group_sessions
from tuiagent.runs.records import ProxyTurn

SONNET, HAIKU = "claude-sonnet-4-5", "claude-haiku-4-5"
# Above every model's minimum cacheable length (the offline model counts like the API).
LONG = "You are a careful assistant. " * 900
MARK = {"type": "ephemeral"}


@pytest.fixture
def proxied(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Proxied]:
    """The proxy in front of the offline model; its cap `request.param`, else $5."""
    offline = ProxyServer(OfflineAPI(), bind("127.0.0.1", 0)).start()
    try:
        with proxy_to(offline.url, tmp_path, cap=getattr(request, "param", "5.00")) as p:
            yield p
    finally:
        offline.stop()


def _system(text: str = LONG) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text, "cache_control": MARK}]


def _call(
    p: Proxied,
    messages: list[dict[str, Any]],
    *,
    model: str = SONNET,
    system: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
    max_tokens: int = 200,
) -> anthropic.types.Message:
    client = anthropic.Anthropic(base_url=p.url, api_key="sk-ant-test", max_retries=0)
    extra: dict[str, Any] = {"metadata": metadata} if metadata else {}
    return client.messages.create(
        model=model,
        max_tokens=max_tokens,
        system=system if system is not None else _system(),  # type: ignore[arg-type]
        messages=messages,  # type: ignore[arg-type]
        extra_headers=headers or {},
        **extra,
    )


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text, "cache_control": MARK}]}


def _turns(p: Proxied) -> list[dict[str, Any]]:
    return p.records("turn", "attempt")


def test_each_call_names_its_session_agent_and_why_it_missed(proxied: Proxied) -> None:
    p = proxied
    s1 = {"X-Claude-Code-Session-Id": "sess-1"}
    sub = {**s1, "x-claude-code-agent-id": "agent-a", "x-claude-code-parent-agent-id": "p-0"}
    first = _call(p, [_user("hello")], headers=s1)  # 1: writes the cache
    history = [_user("hello"), {"role": "assistant", "content": first.content}]
    _call(p, [*history, _user("go on")], headers=s1)  # 2: reads it
    _call(p, [_user("task for a sub-agent")], headers=sub)  # 3: the sub-agent's first call
    _call(p, [*history, _user("more")], headers=s1, system=_system(LONG + "Be brief."))  # 4
    _call(p, [*history, _user("and more")], headers=s1, model=HAIKU)  # 5: another model
    edited = [_user("hello, edited"), history[1], _user("and more")]
    _call(p, edited, headers=s1, model=HAIKU)  # 6: an earlier message changed
    # 7: the session named only inside metadata.user_id (JSON), as the coding agent does
    meta = {"user_id": json.dumps({"device_id": "d", "session_id": "sess-2"})}
    _call(p, [_user("short")], system=_system("Be brief."), metadata=meta)  # below minimum
    turns = _turns(p)
    assert [t["type"] for t in turns] == ["turn"] * 7
    assert [t.get("session") for t in turns] == ["sess-1"] * 6 + ["sess-2"]
    assert [t.get("agent_id") for t in turns] == [None, None, "agent-a", None, None, None, None]
    assert turns[2]["parent_agent_id"] == "p-0" and "parent_agent_id" not in turns[0]
    assert [t["cache_miss_reason"] for t in turns] == [
        None,
        None,
        None,  # the sub-agent's own first call: nothing of its own to miss
        "system_changed",
        "model_changed",
        "messages_changed",
        "below_minimum",
    ]
    assert turns[1]["cache_read_input_tokens"] > 0  # the hit the misses are measured from


@pytest.mark.parametrize("proxied", ["0.50"], indirect=True)
def test_report_groups_proxied_calls_by_session_then_agent(proxied: Proxied) -> None:
    p = proxied
    s1 = {"X-Claude-Code-Session-Id": "sess-1"}
    a = {**s1, "x-claude-code-agent-id": "agent-a"}
    b = {**s1, "x-claude-code-agent-id": "agent-b", "x-claude-code-parent-agent-id": "agent-a"}
    first = _call(p, [_user("hello")], headers=s1)
    _call(p, [_user("hello"), {"role": "assistant", "content": first.content}, _user("x")], headers=s1)  # fmt: skip
    _call(p, [_user("sub task")], headers=a)
    _call(p, [_user("sub sub task")], headers=b)
    _call(p, [_user("other")], headers={"X-Claude-Code-Session-Id": "sess-2"}, system=_system("Hi."))  # fmt: skip
    _call(p, [_user("lowered")], headers=s1, max_tokens=20_000)  # more than its fair share
    with pytest.raises(anthropic.BadRequestError, match="refused before sending"):
        _call(p, [_user("word " * 120_000)], headers={"X-Claude-Code-Session-Id": "sess-2"})  # fmt: skip
    turns = _turns(p)
    assert turns[-2]["cache_miss_reason"] == "below_minimum"
    assert turns[-1]["lowered"] and turns[-1]["max_tokens"] < 20_000
    log_dir = p.log_path.parent
    result = run_cli("report", "--json", "--log-dir", str(log_dir))
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["proxy_sessions"]
    assert [(r["session"], r["agent"], r["calls"]) for r in rows] == [
        ("sess-1", "main", 3),
        ("sess-1", "agent-a", 1),
        ("sess-1", "agent-b", 1),
        ("sess-2", "main", 2),
    ]
    assert rows[3]["refused"] == 1 and rows[3]["last_cause"].startswith("refused: ")
    assert rows[2]["parent_agent"] == "agent-a"
    assert "max_tokens lowered 20,000->" in rows[0]["last_cause"]
    assert 0 < rows[0]["cache_hit_rate"] < 1
    assert sum(Decimal(str(r["cost_usd"])) for r in rows) == sum(
        Decimal(str(t["cost_usd"])) for t in turns
    )
    shown = run_cli("report", "--log-dir", str(log_dir), env={"COLUMNS": "160"})
    lines = shown.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "Proxied calls by session" in line)
    table = [line for line in lines[at + 1 :] if line.strip()][2:6]
    print(shown.stdout)
    assert [line.split()[0] for line in table] == ["sess-1", "agent-a", "agent-b", "sess-2"]
    # Sub-agents indented under their parent: agent-b deeper than agent-a.
    indent = [len(line) - len(line.lstrip()) for line in table]
    assert indent[0] < indent[1] < indent[2] and indent[3] == indent[0]


def _usage(read: int, write: int) -> TokenUsage:
    return TokenUsage(
        input_tokens=10,
        output_tokens=5,
        cache_read_input_tokens=read,
        cache_creation_input_tokens=write,
        cache_creation_5m_input_tokens=write,
    )


def _req(model: str = SONNET, system: str = "s", messages: int = 1, ttl: str = "5m") -> dict[str, Any]:  # fmt: skip
    marked = {"type": "ephemeral", "ttl": ttl}
    return {
        "model": model,
        "system": [{"type": "text", "text": system, "cache_control": marked}],
        "messages": [{"role": "user", "content": f"m{i}"} for i in range(messages)],
    }


def test_an_entry_past_its_lifetime_is_named_expired() -> None:
    now = [0.0]
    causes = MissCauses(lambda: now[0])
    assert causes.cause("k", _req(messages=1), _usage(0, 2000)) is None
    now[0] = 299.0
    assert causes.cause("k", _req(messages=3), _usage(2000, 50)) is None  # within 5 minutes
    now[0] = 299.0 + 301.0
    assert causes.cause("k", _req(messages=5), _usage(0, 2100)) == "expired"
    # A 1-hour entry outlives 5 minutes.
    assert causes.cause("h", _req(ttl="1h"), _usage(0, 2000)) is None
    now[0] += 1800
    assert causes.cause("h", _req(ttl="1h", messages=3), _usage(1000, 900)) == "unavailable"
    # No markers: no caching asked for, nothing missed.
    assert causes.cause("n", {"model": SONNET, "messages": []}, _usage(0, 0)) is None


@settings(max_examples=60, deadline=None)
@given(
    sessions=st.lists(
        st.tuples(
            st.sampled_from(["s1", "s2", ""]),
            st.sampled_from(["", "a", "b"]),
            st.sampled_from(["", "a", "b", "zz"]),
            st.decimals(min_value=0, max_value=1, places=6),
        ),
        max_size=30,
    )
)
def test_every_call_is_in_exactly_one_group(
    sessions: list[tuple[str, str, str, Decimal]],
) -> None:
    records = [
        ProxyTurn(
            turn=i + 1,
            client="c",
            session=s or None,
            agent_id=a or None,
            parent_agent_id=parent or None,
            cost_usd=cost,
        )
        for i, (s, a, parent, cost) in enumerate(sessions)
    ]
    rows = group_sessions(("run", r) for r in records)
    assert sum(r.calls for r in rows) == len(records)
    assert sum(r.cost for r in rows) == sum(r.cost_usd for r in records)
    assert len({(r.session, r.agent) for r in rows}) == len(rows)
    assert session_key("s", "a", {}) != session_key("s", None, {})


def test_a_small_call_on_another_model_leaves_the_main_models_cache_named_warm() -> None:
    causes = MissCauses(lambda: 0.0)
    assert causes.cause("k", _req(messages=1), _usage(0, 2000)) is None
    assert causes.cause("k", _req(HAIKU, system="t"), _usage(0, 3000)) == "model_changed"
    assert causes.cause("k", _req(messages=3), _usage(2000, 40)) is None  # sonnet: still warm
    assert causes.cause("k", _req(HAIKU, system="t", messages=3), _usage(3000, 9)) is None


def test_a_groups_budget_is_the_ledgers_line_of_its_scope_and_value() -> None:
    """A client's name as the records keep it (raw) and as the ledger keeps it (made safe)
    name the same budget; a session's and an agent's, theirs only."""
    from tuiagent.ledger import BudgetLine, BudgetSpec, Window
    from tuiagent.ledger.scopes import clean_value
    from tuiagent.report.sessions import SessionBook, group_budget

    client = "agent-ä/1.0"  # not ASCII: the ledger keeps a hash of it
    book = SessionBook()
    for agent in (None, "sub-1"):
        book.add("r", ProxyTurn(turn=1, client=client, session="s-1", agent_id=agent))
    day = Window.parse("day")

    def line(scope: str, value: str, cap: str) -> BudgetLine:
        spec = BudgetSpec(scope, day, Decimal(cap))
        return BudgetLine(spec, value, Decimal(cap), Decimal(0), Decimal(0), None)

    lines = [
        line("client", str(clean_value(client)), "3"),
        line("session", "s-1", "2"),
        line("session", "s-2", "9"),
        line("agent", "sub-1", "1"),
    ]
    found = {(g.kind, g.name): group_budget(lines, g) for g in book.tree()}
    assert {k: v.cap if v else None for k, v in found.items()} == {
        ("client", client): Decimal(3),
        ("session", "s-1"): Decimal(2),
        ("agent", "main"): None,
        ("agent", "sub-1"): Decimal(1),
    }
