"""A billable request's body, read exactly or refused.

The proxy holds a request's worst case from what its body says (its model, `max_tokens`, its
messages): a body it cannot read exactly would be metered as something other than what the
upstream bills. So a Messages body must be strict JSON in UTF-8 (no duplicate keys, which two
parsers may read differently; no NaN), and the fields the meter reads must have the types the
API takes. Each refusal names the field, in the API's own words where they are known.
"""

from __future__ import annotations

import json
from typing import Any


class BadBody(ValueError):
    """The request is not sent: the message says which field, and why; `model`, the model
    it names, when it names one (for its record)."""

    model = ""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise BadBody(f"{twice}: the key appears twice in one object")
    return out


def _constant(name: str) -> Any:
    raise BadBody(f"request body: {name} is not JSON")


def parse_json(raw: bytes | bytearray | memoryview) -> Any:
    """Strict JSON in UTF-8."""
    try:
        text = bytes(raw).decode("utf-8") if isinstance(raw, memoryview) else raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(f"request body: not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise BadBody(f"request body: not valid JSON ({exc.msg} at byte {exc.pos})") from None
    except RecursionError:
        raise BadBody("request body: nested too deeply to read") from None
    except ValueError as exc:  # a number too long to read (int's digit limit)
        raise BadBody(f"request body: {exc}") from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _blocks(value: object, where: str) -> None:
    """A string, or a list of content blocks (objects)."""
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise BadBody(f"{where}: Input should be a valid string or a valid list")
    for i, block in enumerate(value):
        if not isinstance(block, dict):
            raise BadBody(f"{where}.{i}: Input should be a valid dictionary")


def messages_request(raw: bytes | bytearray | memoryview) -> dict[str, Any]:
    """A Messages request (`POST /v1/messages`) whose every priced field can be read."""
    body = parse_json(raw)
    try:
        check_message_params(body)
    except BadBody as exc:
        model = body.get("model") if isinstance(body, dict) else None
        exc.model = model if isinstance(model, str) else ""
        raise
    return body  # type: ignore[no-any-return]


def check_message_params(body: Any, where: str = "") -> None:
    """The fields the meter reads, with the types the API takes (`where`: the prefix of a
    batch request's params, `requests.3.params.`)."""
    if not isinstance(body, dict):
        raise BadBody(f"{where.rstrip('.') or 'request body'}: Input should be a valid dictionary")
    for key in ("model", "messages", "max_tokens"):
        if key not in body:
            raise BadBody(f"{where}{key}: Field required")
    if not isinstance(body["model"], str) or not body["model"]:
        raise BadBody(f"{where}model: Input should be a valid string")
    max_tokens = body["max_tokens"]
    if not _is_int(max_tokens):
        raise BadBody(f"{where}max_tokens: Input should be a valid integer")
    if max_tokens < 1:
        raise BadBody(f"{where}max_tokens: Input should be greater than or equal to 1")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise BadBody(f"{where}messages: Input should be a valid list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadBody(f"{where}messages.{i}: Input should be a valid dictionary")
        if "content" not in message:
            raise BadBody(f"{where}messages.{i}.content: Field required")
        _blocks(message["content"], f"{where}messages.{i}.content")
    if body.get("system") is not None:
        _blocks(body["system"], f"{where}system")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise BadBody(f"{where}tools: Input should be a valid list")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict):
                raise BadBody(f"{where}tools.{i}: Input should be a valid dictionary")
            uses = tool.get("max_uses")
            if uses is not None and not (_is_int(uses) and uses >= 0):
                raise BadBody(f"{where}tools.{i}.max_uses: Input should be a valid integer")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise BadBody(f"{where}stream: Input should be a valid boolean")
    thinking = body.get("thinking")
    if thinking is not None:
        if not isinstance(thinking, dict):
            raise BadBody(f"{where}thinking: Input should be a valid dictionary")
        budget = thinking.get("budget_tokens")
        if budget is not None and not _is_int(budget):
            raise BadBody(f"{where}thinking.budget_tokens: Input should be a valid integer")
    for key in ("speed", "inference_geo", "service_tier"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise BadBody(f"{where}{key}: Input should be a valid string")
    for key in BODY_BETAS:
        value = body.get(key)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            raise BadBody(f"{where}{key}: Input should be a valid list of strings")


# Where a body may name betas: a gateway in front of Bedrock or Vertex reads them from
# `anthropic_beta`, the SDKs' keyword is `betas`. They widen a request as the header does.
BODY_BETAS = ("anthropic_beta", "betas")


def body_betas(body: dict[str, Any]) -> tuple[str, ...]:
    """The betas a body checked by `check_message_params` names."""
    return tuple(beta for key in BODY_BETAS for beta in body.get(key) or ())
