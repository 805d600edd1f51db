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
- `max_tokens` is from 0 (0 only fills the prompt cache) to the model's output limit;
- `thinking.budget_tokens` is at least 1,024 and below `max_tokens`; thinking cannot be on
  while `tool_choice` forces a tool;
- `tool_choice` needs `tools`, and `{"type": "tool"}` names one of them;
- `stop_sequences` are strings with something other than whitespace;
- `output_config.format` is `{"type": "json_schema", "schema": {...}}`.
"""

from __future__ import annotations

import typing
from datetime import UTC, datetime
from typing import Any

import anthropic.types
from anthropic.types import message_create_params
from anthropic.types.beta import message_create_params as beta_message_create_params

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

# Output limits (the most `max_tokens` may be) by model id prefix, longest prefix wins: what
# Anthropic's Models API reports (`ModelInfo.max_tokens`, as pydantic-ai's Anthropic profiles
# record it), and the models overview for the older lines (Opus 4 and 4.1: 32K, Sonnet 4: 64K).
OUTPUT_LIMITS: dict[str, int] = {
    "claude-fable-5": 128_000,
    "claude-mythos-5": 128_000,
    "claude-opus-5": 128_000,
    "claude-opus-4-8": 128_000,
    "claude-opus-4-7": 128_000,
    "claude-opus-4-6": 128_000,
    "claude-sonnet-5": 128_000,
    "claude-sonnet-4-6": 128_000,
    "claude-haiku-5-5": 128_000,
    "claude-opus-4-5": 64_000,
    "claude-sonnet-4-5": 64_000,
    "claude-haiku-4-5": 64_000,
    "claude-sonnet-4": 64_000,
    "claude-opus-4-1": 32_000,
    "claude-opus-4-0": 32_000,
    "claude-opus-4-2025": 32_000,
}
DEFAULT_OUTPUT_LIMIT = 64_000
MIN_THINKING_BUDGET = 1024


def output_limit(model: str) -> int:
    best = max((p for p in OUTPUT_LIMITS if model.startswith(p)), key=len, default=None)
    return OUTPUT_LIMITS[best] if best else DEFAULT_OUTPUT_LIMIT


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


def model_ids() -> list[str]:
    """The models the SDK lists (anthropic.types.Model), newest first as it orders them."""
    literal = typing.get_args(anthropic.types.Model)[0]
    return [str(m) for m in typing.get_args(literal)]


def model_info(model: str) -> dict[str, Any]:
    """A `GET /v1/models/{id}` answer (ModelInfo)."""
    return {
        "type": "model",
        "id": model,
        "display_name": _display_name(model),
        "created_at": datetime(2026, 1, 1, tzinfo=UTC).isoformat().replace("+00:00", "Z"),
        "lifecycle": "active",
        "max_input_tokens": _context_window(model),
        "max_tokens": output_limit(model),
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
    model = str(body["model"])
    tools = body.get("tools") or []
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        return "tools: Input should be a valid list of tool definitions"
    thinking = body.get("thinking")
    choice = body.get("tool_choice")
    if not count_tokens:
        max_tokens = body["max_tokens"]
        if not _int(max_tokens):
            return "max_tokens: Input should be a valid integer"
        if max_tokens < 0:
            return "max_tokens: Input should be greater than or equal to 0"
        limit = output_limit(model)
        if max_tokens > limit:
            return (
                f"max_tokens: {max_tokens} > {limit}, which is the maximum allowed number of "
                f"output tokens for {model}"
            )
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
        thinking_on = isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")
        if kind in ("any", "tool") and thinking_on:
            return "Thinking may not be enabled when tool_choice forces tool use."
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
    return None
