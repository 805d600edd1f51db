"""The run log's records, typed: what each line holds, how it is written, how it is read back.

Each record type is a frozen dataclass; its fields, in order, are the line's keys after `type`
and `run_id`. `to_json()` is the one writer (money is `Decimal` here and a JSON number in USD
there, as `usd` rounds it); `read()` is the one reader, and it is tolerant: a log from an
older or a newer version reads without error. A field an older version did not write, or one
of the wrong type, reads as the field's default; a field this version does not know is
ignored; a record type it does not know reads as `Unknown` (its raw dict kept).

To add a field to a record: add it to the class here, with a default (what older lines read
as), and set it where the record is built. It is written by `to_json()` and read back by
`read()` from its annotation (int, str, bool, float, Decimal, an enum, a dataclass, lists and
dicts of those); no writer or reader elsewhere changes. A field declared with
`metadata=OMIT` is left out of the line while it is None (a flag written only when set).

Older lines are upgraded in one place, `_upgrade`: schema 0 (logs written before `schema` was)
has today's field names, so it only notes the version.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from decimal import Decimal, InvalidOperation
from enum import Enum, StrEnum
from functools import cache
from typing import Any, ClassVar

from tuiagent.cost.pricing import Cost, usd
from tuiagent.llm.tokens import TokenUsage
from tuiagent.redact import redact_data

SCHEMA = 1  # written in every run_start; a log without it is schema 0


class HaltReason(StrEnum):
    """Why a run (or a request) stopped before its answer. Written as its string."""

    MAX_COST = "max_cost"  # no useful call fits what is left of the cap
    MAX_TURNS = "max_turns"
    MAX_RETRIES = "max_retries"
    INTERRUPTED = "interrupted"  # Escape, Ctrl-C, a signal
    ERROR = "error"  # a call failed for good (not a limit the user set)
    CONTEXT = "context"  # the conversation no longer fits the model's window


# --- the tolerant accessors (for the few readers that still hold a dict) ------------------


def int_of(record: Mapping[str, Any], key: str) -> int:
    value = _int(record.get(key))
    return 0 if value is None else value


def money_of(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def str_of(record: Mapping[str, Any], key: str, default: str = "") -> str:
    value = record.get(key)
    return value if isinstance(value, str) else default


def usage_of(record: Mapping[str, Any]) -> TokenUsage:
    usage: TokenUsage = _decode_fields(TokenUsage, record)
    return usage


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return int(value)
    return None


# --- the records ------------------------------------------------------------------------


# A field with `metadata=OMIT` is left out of the line while it is None (a flag written only
# when set); one with `metadata=FLAT` (a dataclass: usage) has its fields at the top level.
OMIT = {"omit_none": True}
FLAT = {"flatten": True}


_REGISTRY: dict[tuple[str, str | None], type[Record]] = {}


@dataclass(frozen=True, kw_only=True)
class Record:
    """Fields every record has: its run and the agent that wrote it (a sub-agent's records
    also name their parent, the parent's turn and the task)."""

    TYPE: ClassVar[str] = ""
    SOURCE: ClassVar[str | None] = None  # the proxy's records: same types, their own shape

    run_id: str = ""
    agent: str | None = field(default=None, metadata=OMIT)
    parent_agent: str | None = field(default=None, metadata=OMIT)
    parent_turn: int | None = field(default=None, metadata=OMIT)
    task: str | None = field(default=None, metadata=OMIT)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "TYPE" in cls.__dict__:
            _REGISTRY[(cls.TYPE, cls.SOURCE)] = cls

    @property
    def type(self) -> str:
        return self.TYPE

    def to_json(self) -> dict[str, Any]:
        """The record as its log line's object (today's field names and values)."""
        return {"type": self.TYPE, **_encode_fields(self)}

    def redacted(self) -> Record:
        """This record with any secret in its text replaced (itself when there is none: one
        repr of its texts searched, nothing copied)."""
        names = [
            f.name for f in fields(self) if isinstance(getattr(self, f.name), str | dict | list)
        ]
        values = [getattr(self, name) for name in names]
        clean = redact_data(values)
        if clean is values:
            return self
        changes = {n: c for n, v, c in zip(names, values, clean, strict=True) if c != v}
        return dataclasses.replace(self, **changes) if changes else self


@dataclass(frozen=True)
class Limits:
    max_cost_usd: Decimal = Decimal(0)
    max_turns: int | None = field(default=None, metadata=OMIT)
    max_tokens: int | None = field(default=None, metadata=OMIT)


@dataclass(frozen=True, kw_only=True)
class RunStart(Record):
    TYPE = "run_start"
    schema: int = SCHEMA
    started_at: str = ""
    provider: str = ""
    simulated: bool = False
    models: dict[str, str] = field(default_factory=dict)
    tier: str = ""
    limits: Limits = field(default_factory=Limits)
    # A replay's source: {run_id, turn, model} (turn is "all" for an experiment).
    replay_of: dict[str, Any] | None = field(default=None, metadata=OMIT)
    # A resumed session: the run whose conversation (and kept results) it goes on with.
    resumed_from: str | None = field(default=None, metadata=OMIT)
    # The session a resumed run goes on with (its budgets' session), when not its own id.
    session: str | None = field(default=None, metadata=OMIT)
    # A run of `tuiagent eval`: {suite, task, arm, repeat} (tuiagent/eval/).
    eval: dict[str, Any] | None = field(default=None, metadata=OMIT)
    # The workspace the run worked in (for an eval run, the task's own, not its copy).
    workspace: str | None = field(default=None, metadata=OMIT)


@dataclass(frozen=True, kw_only=True)
class UserMessage(Record):
    """The user's message (type "user")."""

    TYPE = "user"
    text: str = ""
    tokens: int = 0


@dataclass(frozen=True, kw_only=True)
class McpServerState(Record):
    """An MCP server started, failed to start, or stopped (type "mcp"): its tools and what
    their definitions weigh in tokens."""

    TYPE = "mcp"
    server: str = ""
    transport: str = ""  # stdio | http
    status: str = ""  # started | failed | stopped
    tools: int = 0
    definition_tokens: int = 0
    error: str | None = field(default=None, metadata=OMIT)
    # Above `mcp_defer_above`: whether its definitions go through tool search, and why.
    deferred: bool | None = field(default=None, metadata=OMIT)
    deferral: str | None = field(default=None, metadata=OMIT)


@dataclass(frozen=True, kw_only=True)
class McpCost(Record):
    """What each MCP server's tool definitions took in one agent call (type "mcp_cost"):
    tokens and dollars at the call's own rates, and the session's total so far."""

    TYPE = "mcp_cost"
    turn: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    cost_usd: dict[str, Decimal] = field(default_factory=dict)
    session_cost_usd: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Answer(Record):
    """The agent's answer to the user's message: the text of the call that ended the
    request (`turn`), and why it stopped (`end_turn`, `max_tokens`, ...)."""

    TYPE = "answer"
    turn: int = 0
    text: str = ""
    stop_reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class Turn(Record):
    """A model call that answered (or was stopped): what it used, cost and why."""

    TYPE = "turn"
    turn: int = 0
    purpose: str = "agent"  # (before `purpose` was written, every call was the agent's)
    model: str = ""
    tier: str = ""
    simulated: bool = False
    usage: TokenUsage = field(default_factory=TokenUsage, metadata=FLAT)
    context_tokens: int = 0
    context_window: int = 0
    cost_usd: Decimal = Decimal(0)
    cost_breakdown_usd: Cost = field(default_factory=Cost)
    cumulative_cost_usd: Decimal = Decimal(0)
    max_tokens: int = 0
    max_tokens_requested: int = 0
    input_tokens_counted: int = 0
    input_count_source: str = ""
    reserved_usd: Decimal = Decimal(0)
    stop_reason: str | None = None
    latency_s: float = 0.0
    ttft_s: float | None = None
    started_at: str = ""
    ended_at: str = ""
    request_id: str | None = None
    message_id: str | None = None
    route_reason: str = ""
    route_candidates: list[dict[str, Any]] = field(default_factory=list)
    escalated_from_turn: int | None = None
    cache_miss_reason: str | None = None
    cost_without_cache_usd: Decimal = Decimal(0)
    saved_by_cache_usd: Decimal = Decimal(0)
    tool_calls: list[str] = field(default_factory=list)
    cut_tool_calls: list[str] = field(default_factory=list)
    priced_as: str = ""
    # Flags, written only when set.
    sent: bool | None = field(
        default=None, metadata=OMIT
    )  # False: the request never left (nothing billed)
    usage_unknown: bool | None = field(
        default=None, metadata=OMIT
    )  # no usage came: its worst case is kept
    output_unknown: bool | None = field(
        default=None, metadata=OMIT
    )  # output billed at the most the request allowed
    over_reservation: bool | None = field(
        default=None, metadata=OMIT
    )  # the server billed more than was reserved
    model_mismatch: str | None = field(
        default=None, metadata=OMIT
    )  # the model the server answered as
    unpriced_model: bool | None = field(
        default=None, metadata=OMIT
    )  # model_mismatch could not be priced: kept the hold's worst case
    hold_id: str | None = field(default=None, metadata=OMIT)  # its `hold` record
    lowered: str | None = field(default=None, metadata=OMIT)  # "cap" | "fair share"
    waited_s: float | None = field(default=None, metadata=OMIT)  # for holds in flight
    modifiers: dict[str, str] | None = field(default=None, metadata=OMIT)  # priced with


@dataclass(frozen=True, kw_only=True)
class Attempt(Record):
    """A failed model call: what it may have billed, and whether it is retried."""

    TYPE = "attempt"
    turn: int = 0
    purpose: str = "agent"  # (before `purpose` was written, every call was the agent's)
    model: str = ""
    tier: str = ""
    status: int | None = None  # the HTTP status, None when no answer came
    error_type: str = ""
    error: str = ""
    request_id: str | None = None
    retry_in_s: float | None = None
    retries_used: int = 0
    usage: TokenUsage = field(default_factory=TokenUsage, metadata=FLAT)
    cost_usd: Decimal = Decimal(0)
    reserved_usd: Decimal = Decimal(0)
    cumulative_cost_usd: Decimal = Decimal(0)
    sent: bool | None = field(default=None, metadata=OMIT)
    usage_unknown: bool | None = field(default=None, metadata=OMIT)
    output_unknown: bool | None = field(default=None, metadata=OMIT)
    over_reservation: bool | None = field(default=None, metadata=OMIT)
    model_mismatch: str | None = field(default=None, metadata=OMIT)
    unpriced_model: bool | None = field(default=None, metadata=OMIT)
    priced_as: str | None = field(default=None, metadata=OMIT)
    hold_id: str | None = field(default=None, metadata=OMIT)
    lowered: str | None = field(default=None, metadata=OMIT)
    waited_s: float | None = field(default=None, metadata=OMIT)
    modifiers: dict[str, str] | None = field(default=None, metadata=OMIT)


@dataclass(frozen=True, kw_only=True)
class HoldRecord(Record):
    """A call's worst case held in flight, written before the call is sent: a run killed
    while it was in flight leaves this without its `turn` or `attempt` (same `hold_id`),
    and `report` counts it at its worst case, "in flight when the run died"."""

    TYPE = "hold"
    hold_id: str = ""
    turn: int = 0
    purpose: str = ""
    model: str = ""
    reserved_usd: Decimal = Decimal(0)
    max_tokens: int = 0
    input_tokens_counted: int = 0
    started_at: str = ""
    source: str | None = field(default=None, metadata=OMIT)  # "proxy" for a proxied call
    client: str | None = field(default=None, metadata=OMIT)


@dataclass(frozen=True, kw_only=True)
class ToolCall(Record):
    TYPE = "tool"
    turn: int = 0
    tool_use_id: str = ""
    name: str = ""
    input: dict[str, Any] = field(default_factory=dict)
    ok: bool = True
    result_tokens: int = 0
    original_tokens: int = 0
    compressed_tokens: int = 0
    method: str = ""
    result_id: str | None = None
    # write_file / edit_file: lines added plus lines removed by the change.
    diff_lines: int | None = field(default=None, metadata=OMIT)


@dataclass(frozen=True, kw_only=True)
class KeepWarm(Record):
    """A keep-warm decision: refresh the prompt cache before it expires, or skip."""

    TYPE = "keep_warm"
    model: str = ""
    cached_prefix_tokens: int = 0
    expires_in_s: float = 0.0
    refresh_cost_usd: Decimal = Decimal(0)
    miss_cost_usd: Decimal = Decimal(0)
    action: str = ""  # refresh | skip
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class ContextEdit(Record):
    """The conversation edited to keep its context in bounds (type "context"): old tool
    results cleared, a compaction, /clear. The fields an action does not have are left out."""

    TYPE = "context"
    action: str = ""  # clear_tool_results | compact | clear
    turn: int = 0
    model: str | None = field(default=None, metadata=OMIT)
    results: int | None = field(default=None, metadata=OMIT)
    result_ids: list[str] | None = field(default=None, metadata=OMIT)
    messages_before: int | None = field(default=None, metadata=OMIT)
    messages_after: int | None = field(default=None, metadata=OMIT)
    tokens_before: int = 0
    tokens_after: int = 0
    cleared_tokens: int | None = field(default=None, metadata=OMIT)
    rewritten_tokens: int | None = field(default=None, metadata=OMIT)
    summary_tokens: int | None = field(default=None, metadata=OMIT)
    saved_per_call_usd: Decimal | None = field(default=None, metadata=OMIT)
    rewrite_cost_usd: Decimal | None = field(default=None, metadata=OMIT)
    cost_usd: Decimal = Decimal(0)
    reason: str = ""
    # A compaction: what set it off (window: the context neared the window; saving: a large
    # history whose summary saves enough on each call; asked: /compact).
    trigger: str | None = field(default=None, metadata=OMIT)


@dataclass(frozen=True, kw_only=True)
class SubAgentEnd(Record):
    """How a sub-agent ended and what it spent (type "agent")."""

    TYPE = "agent"
    status: str = ""  # completed | stopped | failed | interrupted
    halt_reason: HaltReason | str | None = None
    detail: str = ""
    tier: str = ""
    turns: int = 0
    cost_usd: Decimal = Decimal(0)
    slice_usd: Decimal = Decimal(0)
    started_at: str = ""
    ended_at: str = ""


@dataclass(frozen=True)
class ReplayedTurn:
    """One turn of an experiment: as it ran, as it was replayed, and the judge's verdict."""

    run_id: str = ""
    turn: int = 0
    original_tier: str = ""
    original_model: str = ""
    original_cost_usd: Decimal = Decimal(0)
    replay_tier: str = ""
    replay_model: str = ""
    replay_cost_usd: Decimal = Decimal(0)
    verdict: str | None = None  # same | acceptable | worse; None: not judged
    reason: str = ""
    judge_cost_usd: Decimal = Decimal(0)
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class ExperimentResult(Record):
    """A replay of every agent turn on another tier (type "experiment", agent/experiment.py),
    as `replay --all --json` prints it."""

    TYPE = "experiment"
    experiment_run_id: str = ""
    replay_of: list[str] = field(default_factory=list)
    tier: str = ""
    model: str = ""
    simulated: bool = False
    halted: HaltReason | str | None = None
    cap_usd: Decimal = Decimal(0)
    turns: list[ReplayedTurn] = field(default_factory=list)
    skipped_turns: list[dict[str, Any]] = field(default_factory=list)  # [{run_id, turn}]
    verdicts: dict[str, int] = field(default_factory=dict)
    # original_cost_usd, replay_cost_usd, judge_cost_usd, experiment_cost_usd,
    # would_have_cost_usd, saving_usd
    totals: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RunEnd(Record):
    TYPE = "run_end"
    ended_at: str = ""
    status: str = ""  # completed | halted | error
    # A HaltReason when halted (a reason from a newer version reads as its string).
    halt_reason: HaltReason | str | None = None
    turns: int = 0
    subagent_turns: int = 0  # the turns of its sub-agents, all told
    total_cost_usd: Decimal = Decimal(0)
    total_input_tokens: int = 0
    total_output_tokens: int = 0
    total_cache_read_input_tokens: int = 0
    total_cache_creation_input_tokens: int = 0
    total_cache_creation_5m_input_tokens: int = 0
    total_cache_creation_1h_input_tokens: int = 0
    cost_without_cache_usd: Decimal = Decimal(0)
    saved_by_cache_usd: Decimal = Decimal(0)
    cache_hit_rate: float = 0.0


# --- the metering proxy's records (tuiagent/proxy): `"source": "proxy"` ----------------------


@dataclass(frozen=True, kw_only=True)
class ProxyRunStart(Record):
    TYPE = "run_start"
    SOURCE = "proxy"
    schema: int = SCHEMA
    started_at: str = ""
    provider: str = ""
    source: str = "proxy"
    upstream: str = ""
    simulated: bool = False
    auto_cache: bool = False
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True, kw_only=True)
class ProxyTurn(Record):
    """A client's call through the proxy that answered in full."""

    TYPE = "turn"
    SOURCE = "proxy"
    turn: int = 0
    purpose: str = ""
    source: str = "proxy"
    client: str = ""
    model: str = ""
    stream: bool = False
    usage: TokenUsage = field(default_factory=TokenUsage, metadata=FLAT)
    cost_usd: Decimal = Decimal(0)
    cost_breakdown_usd: Cost | None = None  # None: the usage is unknown
    cumulative_cost_usd: Decimal = Decimal(0)
    cap_usd: Decimal | None = field(default=None, metadata=OMIT)  # the cap as it settled
    usage_unknown: bool = False
    max_tokens: int = 0
    max_tokens_requested: int = 0
    input_tokens_counted: int = 0
    input_count_source: str = ""
    reserved_usd: Decimal = Decimal(0)
    auto_cache: bool = False
    status: int | None = None
    stop_reason: str | None = None
    latency_s: float = 0.0
    ttft_s: float | None = None
    ended_at: str = ""
    request_id: str | None = None
    message_id: str | None = None
    cache_miss_reason: str | None = None
    # The coding agent's session and sub-agent (and its parent), when the client names them.
    session: str | None = field(default=None, metadata=OMIT)
    agent_id: str | None = field(default=None, metadata=OMIT)
    parent_agent_id: str | None = field(default=None, metadata=OMIT)
    cost_without_cache_usd: Decimal | None = field(default=None, metadata=OMIT)  # turns
    saved_by_cache_usd: Decimal | None = field(default=None, metadata=OMIT)  # turns
    error_type: str | None = field(default=None, metadata=OMIT)  # attempts
    error: str | None = field(default=None, metadata=OMIT)  # attempts
    sent: bool | None = field(default=None, metadata=OMIT)  # False: it never left
    output_unknown: bool | None = field(default=None, metadata=OMIT)
    over_reservation: bool | None = field(default=None, metadata=OMIT)
    model_mismatch: str | None = field(default=None, metadata=OMIT)
    unpriced_model: bool | None = field(default=None, metadata=OMIT)
    priced_as: str | None = field(default=None, metadata=OMIT)
    hold_id: str | None = field(default=None, metadata=OMIT)
    lowered: str | None = field(default=None, metadata=OMIT)
    waited_s: float | None = field(default=None, metadata=OMIT)
    modifiers: dict[str, str] | None = field(default=None, metadata=OMIT)
    # A Message Batch's request (purpose "batch"): its batch and its custom_id.
    batch_id: str | None = field(default=None, metadata=OMIT)
    custom_id: str | None = field(default=None, metadata=OMIT)


@dataclass(frozen=True, kw_only=True)
class ProxyAttempt(ProxyTurn):
    """A client's call through the proxy that failed or was cut."""

    TYPE = "attempt"
    SOURCE = "proxy"


@dataclass(frozen=True, kw_only=True)
class RefusedCall(Record):
    """A call the proxy refused before sending (it did not fit the cap, or could not be
    counted)."""

    TYPE = "refused"
    turn: int = 0
    client: str = ""
    model: str = ""
    error: str = ""
    session: str | None = field(default=None, metadata=OMIT)  # as a ProxyTurn's
    agent_id: str | None = field(default=None, metadata=OMIT)
    parent_agent_id: str | None = field(default=None, metadata=OMIT)


@dataclass(frozen=True, kw_only=True)
class ProxyRunEnd(Record):
    TYPE = "run_end"
    SOURCE = "proxy"
    ended_at: str = ""
    status: str = "stopped"
    source: str = "proxy"
    total_cost_usd: Decimal = Decimal(0)
    in_flight_usd: Decimal = Decimal(0)


# A model call's record, the agent's or a proxied one's (a ProxyAttempt is a ProxyTurn).
Call = Turn | Attempt | ProxyTurn
Start = RunStart | ProxyRunStart
End = RunEnd | ProxyRunEnd


@dataclass(frozen=True)
class Unknown:
    """A line of a type this version does not know (a newer version's): kept as it was."""

    raw: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.raw.get("type", ""))

    def to_json(self) -> dict[str, Any]:
        return dict(self.raw)


# --- writing --------------------------------------------------------------------------------


def _encode(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return usd(value)
    if is_dataclass(value) and not isinstance(value, type):
        return _encode_fields(value)
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


@cache
def _plan(cls: type) -> tuple[tuple[str, bool, bool], ...]:
    """Per field written: its name, whether it is left out while None, whether it is flat."""
    return tuple(
        (f.name, bool(f.metadata.get("omit_none")), bool(f.metadata.get("flatten")))
        for f in fields(cls)
        if f.init
    )


def _encode_fields(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kind: type = type(obj)
    for name, omit, flat in _plan(kind):
        value = getattr(obj, name)
        if value is None and omit:
            continue
        if flat:
            out.update(_encode_fields(value))
        elif isinstance(value, str | int | float | bool) and not isinstance(value, Enum):
            out[name] = value
        else:
            out[name] = _encode(value)
    return out


# --- reading --------------------------------------------------------------------------------

_BAD = object()  # a value of the wrong type: the field's default is taken


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode(tp: Any, value: Any) -> Any:
    """`value` as type `tp`, or _BAD."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is not type(None) and (got := _decode(arg, value)) is not _BAD:
                return got
        return _BAD
    if tp is Any:
        return value
    if tp is bool:
        return value if isinstance(value, bool) else _BAD
    if tp is int:
        got = _int(value)
        return _BAD if got is None else got
    if tp is float:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if number else _BAD
    if tp is str:
        return value if isinstance(value, str) else _BAD
    if tp is Decimal:
        amount = money_of(value)
        return _BAD if amount is None else amount
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(value)
        except ValueError:
            return _BAD
    if isinstance(tp, type) and is_dataclass(tp):
        return _decode_fields(tp, value) if isinstance(value, Mapping) else _BAD
    if origin is dict:
        if not isinstance(value, Mapping):
            return _BAD
        out = {}
        for k, v in value.items():
            if isinstance(k, str) and (got := _decode(args[1], v)) is not _BAD:
                out[k] = got
        return out
    if origin is list:
        if not isinstance(value, list):
            return _BAD
        return [got for v in value if (got := _decode(args[0], v)) is not _BAD]
    return _BAD


def _decode_fields(cls: Any, raw: Mapping[str, Any]) -> Any:
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if not f.init:
            continue
        if f.metadata.get("flatten"):
            kwargs[f.name] = _decode_fields(hints[f.name], raw)
            continue
        if f.name not in raw:
            continue  # an older version did not write it: the default
        got = _decode(hints[f.name], raw[f.name])
        if got is not _BAD:
            kwargs[f.name] = got
    return cls(**kwargs)


def _upgrade(raw: dict[str, Any]) -> dict[str, Any]:
    """An older line in today's shape. Schema 0 (no `schema` in run_start) has today's names."""
    if raw.get("type") == "run_start" and "schema" not in raw:
        raw = {**raw, "schema": 0}
    return raw


def read(line: str | Mapping[str, Any]) -> Record | Unknown | None:
    """One log line (text or its parsed object) as its record; None for a line that cannot be
    trusted (cut, not an object, a number beyond reason: see `parse_line`)."""
    raw = parse_line(line) if isinstance(line, str) else dict(line)
    if raw is None or not isinstance(raw.get("type"), str):
        return None
    raw = _upgrade(raw)
    source = raw.get("source")
    cls = _REGISTRY.get((raw["type"], source if isinstance(source, str) else None))
    cls = cls or _REGISTRY.get((raw["type"], None))
    if cls is None:
        return Unknown(raw)
    record: Record = _decode_fields(cls, raw)
    return record


# --- the line itself ------------------------------------------------------------------------

# What a record the report trusts may hold: no deeper than this, no number beyond these.
_MAX_DEPTH = 32
_MAX_TOKENS = 10**15
_MAX_USD = 10**9


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")  # NaN, Infinity: never written by tuiagent


def _sane(value: Any, key: str = "", depth: int = 0) -> bool:
    """Nesting bounded, numbers finite and in range, the fields tuiagent writes of their type."""
    if depth > _MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return all(_sane(v, str(k), depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_sane(v, "", depth + 1) for v in value)
    if key.endswith("_tokens") or (key in ("turn", "turns") and depth == 1):
        # (a record's own turn; a replay's `replay_of.turn` may be "all")
        return value is None or (type(value) is int and 0 <= value <= _MAX_TOKENS)
    if key.endswith("_usd"):
        return value is None or (type(value) in (int, float) and abs(value) <= _MAX_USD)
    if key in ("type", "run_id", "model", "tier", "purpose"):
        return value is None or isinstance(value, str)
    if isinstance(value, float):
        return abs(value) <= _MAX_USD * _MAX_TOKENS
    return True


def parse_line(line: str) -> dict[str, Any] | None:
    """One log line as a dict, or None for a line the report cannot trust: cut, nested too
    deeply, a number beyond reason (a $1e308 cost), a known field of the wrong type."""
    try:
        value = json.loads(line, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None
    if isinstance(value, dict) and isinstance(value.get("type"), str) and _sane(value):
        return value
    return None
