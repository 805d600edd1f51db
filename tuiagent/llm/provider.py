"""The model seam: what the agent's metered call needs of a model provider, and the
provider-neutral shapes of one call (its stream items, its result, its failure).

The loop and the metered call (agent/call.py) talk to a `Provider`; they never see an SDK.
Behind it today: the Anthropic API through the official SDK (llm/client.py,
`AnthropicProvider`), and the offline model (tuiagent/offline/), which is plugged into that
same SDK client as its HTTP transport, so every byte of it goes through the SDK's code path.

Requests are Anthropic Messages bodies: the shape the conversation, the cache planner and
the meter speak. A provider whose API differs translates a request into its own on the way
out, and its stream back into these items (usage as `TokenUsage`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tuiagent.llm.tokens import TokenUsage
from tuiagent.redact import redact


class Provider(Protocol):
    """One model provider: a streamed call, and its free input-token count where it has one."""

    @property
    def name(self) -> str: ...  # anthropic | offline: run_start's `provider`

    @property
    def simulated(self) -> bool: ...  # its answers are the offline model's, not a model's

    @property
    def counts_tokens(self) -> bool:
        """Whether `count_tokens` may be asked (False once the endpoint said it has none)."""
        ...

    def stream(
        self,
        request: dict[str, Any],
        *,
        clock: Callable[[], float] = time.monotonic,
        call_timeout_s: float = 600.0,
        idle_timeout_s: float = 90.0,
    ) -> AsyncGenerator[StreamItem, None]:
        """Stream one call: text and tool starts as they come, usage as it is reported, then
        the CallResult. Any failure after the call began raises CallFailed with the usage
        seen so far; cancellation propagates as it is."""
        ...

    async def count_tokens(self, request: dict[str, Any]) -> int | None:
        """The request's input tokens as the provider counts them (free), or None where it
        cannot say (no such endpoint, an error, an answer that is not a count). Raises
        CallFailed only where the call itself would fail the same way (a key refused)."""
        ...


class ModelConnection(Protocol):
    """What a run talks through (tuiagent/session.py connects it): the provider, and why that
    one (a notice, or None)."""

    @property
    def provider(self) -> Provider: ...

    @property
    def notice(self) -> str | None: ...


@dataclass(frozen=True)
class TextDelta:
    """A piece of answer text as it streams."""

    text: str


@dataclass(frozen=True)
class UsageUpdate:
    """Usage as the stream reports it so far (message_start, then each message_delta)."""

    usage: TokenUsage


@dataclass(frozen=True)
class ToolUseStarted:
    """The model began a tool call (its input follows as JSON pieces)."""

    tool_use_id: str
    name: str


@dataclass
class CallResult:
    """One finished call: what came back and what it cost in tokens.

    `model` is the model asked for, `response_model` the one the server named (the asked
    one when it named none). `cut_tool_calls` names the tool calls whose input JSON came
    back cut or invalid (at max_tokens, typically): they are billed but left out of
    `content`."""

    message_id: str
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: TokenUsage
    request_id: str | None
    ttft_s: float | None
    latency_s: float
    diagnostics: dict[str, Any] | None = None
    response_model: str = ""
    cut_tool_calls: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.response_model = self.response_model or self.model

    @property
    def text(self) -> str:
        return "".join(b.get("text", "") for b in self.content if b.get("type") == "text")

    @property
    def tool_uses(self) -> list[dict[str, Any]]:
        return [b for b in self.content if b.get("type") == "tool_use"]


class CallFailed(Exception):
    """A call that did not finish. Carries what the API billed before it failed, if known.

    `usage_seen`: valid usage was seen and none invalid after it, so `partial_usage` is what
    the server billed so far (an HTTP error status counts: nothing billed); False: it may
    have billed anything up to the worst case (`partial_usage` then holds the last valid
    usage, for information). `sent`: False only when the request certainly never reached the
    server: it never reached the HTTP client's transport (it could not be built or encoded),
    or the connection was never made (refused, DNS, a bad URL).
    """

    def __init__(
        self,
        *,
        message: str,
        partial_usage: TokenUsage | None = None,
        request_id: str | None = None,
        status: int | None = None,
        error_type: str = "error",
        retry_after_s: float | None = None,
        should_retry: str | None = None,
        latency_s: float = 0.0,
        usage_seen: bool = False,
        sent: bool = True,
        response_model: str | None = None,
    ) -> None:
        message = redact(message)  # a server may echo the key in its error text
        super().__init__(message)
        self.message = message
        self.partial_usage = partial_usage or TokenUsage()
        self.request_id = request_id
        self.status = status
        self.error_type = error_type
        self.retry_after_s = retry_after_s
        self.should_retry = should_retry
        self.latency_s = latency_s
        self.usage_seen = usage_seen
        self.sent = sent
        self.response_model = response_model

    def __str__(self) -> str:
        return self.message


StreamItem = TextDelta | ToolUseStarted | UsageUpdate | CallResult
