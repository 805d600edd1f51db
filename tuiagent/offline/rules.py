"""The Messages API's request rules, as the offline model applies them, and its model list.

Each rule answers 400 `invalid_request_error` with the message the API sends (wording from
recorded responses and the API reference where known). Sources: the SDK's own parameter
docs (`anthropic.types.MessageCreateParams`, `ModelInfo`), the API's error pages and
recorded traffic in shared/wire.

What the API documents and is followed here:
- `model`, `messages` and `max_tokens` are required; unknown top-level fields are refused;
- `messages` is not empty, roles are `user`, `assistant` or `system` (instructions between
  turns, as recorded in shared/wire), the first is `user`; every message
  has content except an optional final assistant message (prefill); consecutive turns of
  one role are merged (no error); every `tool_use` is answered by a `tool_result` in the
  next message and every `tool_result` answers a `tool_use` of the message before;
- `max_tokens` is from 0 (0 only fills the prompt cache);
- `thinking.budget_tokens` is at least 1,024 and below `max_tokens`;
- `tool_choice` needs `tools`, and `{"type": "tool"}` names one of them;
- `stop_sequences` are strings with something other than whitespace;
- `output_config.format` is `{"type": "json_schema", "schema": {...}}`, `output_config.effort`
  one of the five levels, `speed` `standard` or `fast`;
- not every tool is deferred (`defer_loading`), and every tool a search result references
  has a definition (tool_search.py).

Then the model: one the API does not serve (unknown, or retired) is a 404 `not_found_error`
("model: ID", as recorded); and each model's own rules (`tuiagent.llm.models`, one table with
its sources): its output limit, thinking modes, effort levels, sampling parameters, prefill,
forced tool use with thinking, fast mode, `inference_geo`; and the image and PDF limits
(`media.py`). `refusal` answers all of it: the status, the error type and the message.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anthropic.types
from anthropic.types import message_create_params
from anthropic.types.beta import message_create_params as beta_message_create_params

from tuiagent.llm.models import EFFORT_ALL, ModelRules, active_models, rules_for
from tuiagent.offline import tool_search
from tuiagent.offline.media import media_error

# Top-level fields of a Messages request: the SDK's parameters (stable and beta), plus the
# sampling parameters older models still take and the structured-outputs beta's name.
MESSAGE_FIELDS = frozenset(
    {
        *message_create_params.MessageCreateParamsBase.__annotations__,
        *beta_message_create_params.MessageCreateParamsBase.__annotations__,
        "stream",
        "temperature",
        "top_k",
        "top_p",
        "output_format",  # structured outputs' beta name for output_config.format
    }
) - {"betas"}  # betas travel as a header
COUNT_FIELDS = MESSAGE_FIELDS - {"max_tokens", "stream", "stop_sequences", "service_tier"}

MIN_THINKING_BUDGET = 1024


def _context_window(model: str) -> int | None:
    from genai_prices.data_snapshot import get_snapshot

    for provider in get_snapshot().providers:
        if provider.id == "anthropic":
            for m in provider.models:
                if m.is_match(model):
                    window = getattr(m, "context_window", None)
                    return int(window) if window else None
    return None


def _display_name(model: str) -> str:
    words = model.removeprefix("claude-").split("-")
    name = " ".join(w.capitalize() for w in words if not w.isdigit())
    version = ".".join(w for w in words if w.isdigit() and len(w) < 8)
    return f"Claude {name} {version}".strip()


def sdk_model_ids() -> list[str]:
    """The models the SDK lists (anthropic.types.Model), newest first as it orders them."""
    literal = typing.get_args(anthropic.types.Model)[0]
    return [str(m) for m in typing.get_args(literal)]


def model_ids() -> list[str]:
    """The models `GET /v1/models` lists: the SDK's, then the table's other active ones."""
    listed = sdk_model_ids()
    return [*listed, *(m for m in active_models() if m not in listed)]


def model_info(model: str) -> dict[str, Any]:
    """A `GET /v1/models/{id}` answer (ModelInfo)."""
    return {
        "type": "model",
        "id": model,
        "display_name": _display_name(model),
        "created_at": datetime(2026, 1, 1, tzinfo=UTC).isoformat().replace("+00:00", "Z"),
        "lifecycle": "active",
        "max_input_tokens": _context_window(model),
        "max_tokens": rules.max_output if (rules := rules_for(model)) else None,
    }


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return [b for b in content or [] if isinstance(b, dict)]


def _messages_error(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return "messages: Input should be a valid list"
    if not messages:
        return "messages: at least one message is required"
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            return f"messages.{i}: Input should be a valid dictionary"
        if m.get("role") not in ("user", "assistant", "system"):
            return f"messages.{i}.role: Input should be 'user', 'assistant' or 'system'"
        content = m.get("content")
        if not isinstance(content, str | list):
            return f"messages.{i}.content: Field required"
        last = i == len(messages) - 1
        if not _blocks(m) and not (last and m["role"] == "assistant"):
            return (
                f"messages.{i}: all messages must have non-empty content except for the "
                "optional final assistant message"
            )
    if messages[0]["role"] != "user":
        return 'messages: first message must use the "user" role'
    # Consecutive turns of one role are one turn: pair tool_use and tool_result per turn.
    turns: list[tuple[str, int, list[dict[str, Any]]]] = []
    for i, m in enumerate(messages):
        if m["role"] == "system":  # instructions between turns: no turn of their own
            continue
        if turns and turns[-1][0] == m["role"]:
            turns[-1][2].extend(_blocks(m))
        else:
            turns.append((m["role"], i, list(_blocks(m))))
    for t, (role, _, blocks) in enumerate(turns):
        if role != "assistant":
            continue
        used = [str(b.get("id")) for b in blocks if b.get("type") == "tool_use"]
        if not used:
            continue
        after = turns[t + 1][2] if t + 1 < len(turns) else None
        if after is None:
            continue  # the last turn: a prefill the model continues
        answered = {str(b.get("tool_use_id")) for b in after if b.get("type") == "tool_result"}
        missing = [u for u in used if u not in answered]
        if missing:
            return (
                f"messages.{turns[t + 1][1]}: `tool_use` ids were found without `tool_result` "
                f"blocks immediately after: {', '.join(missing)}. Each `tool_use` block must "
                "have a corresponding `tool_result` block in the next message."
            )
    for t, (role, index, blocks) in enumerate(turns):
        if role != "user":
            continue
        before = turns[t - 1][2] if t > 0 else []
        used_ids = {str(b.get("id")) for b in before if b.get("type") == "tool_use"}
        for j, b in enumerate(blocks):
            if b.get("type") == "tool_result" and str(b.get("tool_use_id")) not in used_ids:
                return (
                    f"messages.{index}.content.{j}: unexpected `tool_use_id` found in "
                    f"`tool_result` blocks: {b.get('tool_use_id')}. Each `tool_result` block "
                    "must have a corresponding `tool_use` block in the previous message."
                )
    return None


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def request_error(body: Any, *, count_tokens: bool = False) -> str | None:
    """What the API would refuse in this request (its 400 message), or None."""
    if not isinstance(body, dict):
        return "Input should be a valid dictionary"
    required = ("model", "messages") if count_tokens else ("model", "messages", "max_tokens")
    for key in required:
        if key not in body:
            return f"{key}: Field required"
    allowed = COUNT_FIELDS if count_tokens else MESSAGE_FIELDS
    for key in body:
        if key not in allowed:
            return f"{key}: Extra inputs are not permitted"
    if error := _messages_error(body["messages"]):
        return error
    if not isinstance(body["model"], str):
        return "model: Input should be a valid string"
    tools = body.get("tools") or []
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        return "tools: Input should be a valid list of tool definitions"
    if error := tool_search.request_error(body):
        return error
    thinking = body.get("thinking")
    choice = body.get("tool_choice")
    if not count_tokens:
        max_tokens = body["max_tokens"]
        if not _int(max_tokens):
            return "max_tokens: Input should be a valid integer"
        if max_tokens < 0:
            return "max_tokens: Input should be greater than or equal to 0"
        stops = body.get("stop_sequences")
        if stops is not None:
            if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
                return "stop_sequences: Input should be a valid list of strings"
            if any(not s.strip() for s in stops):
                return "stop_sequences: each stop sequence must contain non-whitespace"
        if isinstance(thinking, dict) and thinking.get("type") == "enabled":
            budget = thinking.get("budget_tokens")
            if not isinstance(budget, int) or isinstance(budget, bool):
                return "thinking.enabled.budget_tokens: Field required"
            if budget < MIN_THINKING_BUDGET:
                return (
                    "thinking.enabled.budget_tokens: Input should be greater than or equal "
                    f"to {MIN_THINKING_BUDGET}"
                )
            if max_tokens <= budget:
                return "`max_tokens` must be greater than `thinking.budget_tokens`."
    if thinking is not None and (
        not isinstance(thinking, dict)
        or thinking.get("type") not in ("enabled", "adaptive", "disabled")
    ):
        return "thinking: Input tag does not match any of the expected tags: 'enabled', 'adaptive', 'disabled'"
    if choice is not None:
        kind = choice.get("type") if isinstance(choice, dict) else None
        if kind not in ("auto", "any", "tool", "none"):
            return "tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
        if kind in ("any", "tool") and not tools:
            return "tool_choice may only be specified while providing tools"
        if kind == "tool" and choice.get("name") not in {t.get("name") for t in tools}:
            return f"tool_choice.name: tool {choice.get('name')!r} is not one of the provided tools"
    config = body.get("output_config") or {}
    if not isinstance(config, dict):
        return "output_config: Input should be a valid dictionary"
    fmt = config.get("format")
    if fmt is not None and not (
        isinstance(fmt, dict)
        and fmt.get("type") == "json_schema"
        and isinstance(fmt.get("schema"), dict)
    ):
        return "output_config.format: Input should be {'type': 'json_schema', 'schema': {...}}"
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            return f"{name}: Input should be a valid number"
        if value is not None and value < 0:
            return f"{name}: Input should be greater than or equal to 0"
        if value is not None and value > 1:
            return f"{name}: Input should be less than or equal to 1"
    top_k = body.get("top_k")
    if top_k is not None and not _int(top_k):
        return "top_k: Input should be a valid integer"
    effort = config.get("effort")
    if effort is not None and effort not in EFFORT_ALL:
        return "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'"
    if body.get("speed") is not None and body["speed"] not in ("standard", "fast"):
        return "speed: Input should be 'standard' or 'fast'"
    geo = body.get("inference_geo")
    if geo is not None and not isinstance(geo, str):
        return "inference_geo: Input should be a valid string"
    return None


@dataclass(frozen=True)
class Refusal:
    """The API's error answer: HTTP status, error type, message."""

    status: int
    type: str
    message: str


def refusal(
    body: Any, *, count_tokens: bool = False, also_served: frozenset[str] = frozenset()
) -> Refusal | None:
    """What the API answers instead of a message (or a count), or None: the request's own
    rules, then the model (404 when the API does not serve it, unless `also_served` names
    it: it then keeps only the general rules), then the model's rules and the media limits."""
    if problem := request_error(body, count_tokens=count_tokens):
        return Refusal(400, "invalid_request_error", problem)
    model = str(body["model"])
    rules = rules_for(model)
    if (rules is None or rules.retired is not None) and model not in also_served:
        return Refusal(404, "not_found_error", f"model: {model}")
    problem = None if count_tokens or rules is None else model_error(body, rules)
    if problem := problem or media_error(body):
        return Refusal(400, "invalid_request_error", problem)
    return None


# The wordings of the model rules. Their sources and how sure each is: `tuiagent.llm.models`
# (the `S_*` sources) and the table in docs/offline.md.
THINKING_TYPE_REFUSED = '"thinking.type.{kind}" is not supported for this model.'  # documented
USE_ADAPTIVE = (
    ' Use "thinking.type.adaptive" and "output_config.effort" to control thinking behavior.'
)
EFFORT_LEVEL_REFUSED = (
    "This model does not support effort level '{level}'. Supported levels: {levels}."  # recorded
)
EFFORT_REFUSED = "This model does not support the effort parameter."  # closest
DISABLED_AT_EFFORT = (  # closest
    "\"thinking.type.disabled\" is not supported with effort '{level}' on this model. Use "
    "effort '{up_to}' or below, or \"thinking.type.adaptive\"."
)
SAMPLING_REFUSED = "`{name}` is deprecated for this model."  # reported
ONE_SAMPLER = "temperature and top_p cannot both be specified for this model."  # reported
TEMPERATURE_WITH_THINKING = "temperature may only be set to 1 when thinking is enabled."  # closest
PREFILL_REFUSED = (  # reported
    "This model does not support assistant message prefill. The conversation must end with a "
    "user message."
)
FORCED_WITH_THINKING = "Thinking may not be enabled when tool_choice forces tool use."  # closest
FAST_REFUSED = "'{model}' does not support the `speed` parameter."  # reported
GEO_REFUSED = "inference_geo: data residency is not supported for {model}"  # closest
_EFFORT_ORDER = {level: i for i, level in enumerate(EFFORT_ALL)}


def model_error(body: dict[str, Any], rules: ModelRules) -> str | None:
    """What this model refuses in a Messages request the API's schema accepts, or None."""
    model = str(body["model"])
    max_tokens = body["max_tokens"]
    if max_tokens > rules.max_output:
        return (
            f"max_tokens: {max_tokens} > {rules.max_output}, which is the maximum allowed "
            f"number of output tokens for {model}"
        )
    thinking = body.get("thinking")
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind is not None and kind not in rules.thinking:
        suffix = USE_ADAPTIVE if "adaptive" in rules.thinking else ""
        return THINKING_TYPE_REFUSED.format(kind=kind) + suffix
    effort = (body.get("output_config") or {}).get("effort")
    if effort is not None and rules.effort is None:
        return EFFORT_REFUSED
    if effort is not None and rules.effort is not None and effort not in rules.effort:
        levels = ", ".join(sorted(rules.effort))
        return EFFORT_LEVEL_REFUSED.format(level=effort, levels=levels)
    up_to = rules.disabled_up_to_effort
    if (
        kind == "disabled"
        and up_to
        and _EFFORT_ORDER.get(effort or "high", 0) > _EFFORT_ORDER[up_to]
    ):
        return DISABLED_AT_EFFORT.format(level=effort, up_to=up_to)
    thinking_on = kind in ("enabled", "adaptive") or (
        kind is None and rules.thinking_default == "adaptive"
    )
    if problem := _sampling_error(body, rules, thinking_on):
        return problem
    if not rules.prefill and _ends_with_assistant(body["messages"]):
        return PREFILL_REFUSED
    choice = body.get("tool_choice")
    forced = isinstance(choice, dict) and choice.get("type") in ("any", "tool")
    if forced and (kind in ("enabled", "adaptive") or rules.thinking_always_on):
        return FORCED_WITH_THINKING
    if body.get("speed") == "fast" and not rules.fast:
        return FAST_REFUSED.format(model=model)
    if body.get("inference_geo") is not None and not rules.inference_geo:
        return GEO_REFUSED.format(model=model)
    return None


def _sampling_error(body: dict[str, Any], rules: ModelRules, thinking_on: bool) -> str | None:
    temperature, top_p = body.get("temperature"), body.get("top_p")
    if rules.sampling == "none":
        for name, value in (("temperature", temperature), ("top_p", top_p)):
            if value is not None and value != 1:
                return SAMPLING_REFUSED.format(name=name)
        if body.get("top_k") is not None:
            return SAMPLING_REFUSED.format(name="top_k")
    if (
        rules.sampling == "one_of_temperature_top_p"
        and temperature is not None
        and top_p is not None
    ):
        return ONE_SAMPLER
    if thinking_on and temperature is not None and temperature != 1:
        return TEMPERATURE_WITH_THINKING
    return None


def _ends_with_assistant(messages: list[dict[str, Any]]) -> bool:
    turns = [m for m in messages if m.get("role") != "system"]
    return bool(turns) and turns[-1].get("role") == "assistant"
