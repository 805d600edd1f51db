"""One table of what each Claude model accepts, each rule with its source.

Every model the SDK lists (`anthropic.types.Model`) and every Anthropic model genai-prices
prices has a row. The offline model enforces the rows (`tuiagent.offline.rules`), the cache
planner reads the minimum cacheable length from them, and the agent's own requests are kept
within them. A rule's `Source` says where the fact comes from and how sure its wording is:

- `recorded`: the API's own answer, recorded in shared/wire;
- `documented`: Anthropic's documentation states the fact (and the wording, where quoted);
- `reported`: the API's answer as pasted in public issue threads (the wording is the API's);
- `closest`: the fact is documented, the wording is not: the closest documented wording;
- `inferred`: no document names this model for this fact; the row takes its family's.

The facts are as of the documentation read on 2026-12-07 (fast mode left Claude Opus 4.8 on
2026-11-30; Claude Sonnet 4 and Opus 4 retired on 2026-06-15, Opus 4.1 on 2026-08-05).

Each model's context window (`context_window`: the most input tokens one request may hold)
comes from genai-prices' model data (`ModelInfo.context_window`), the same data
that prices every call: 1,000,000 tokens for the 5.x models and Opus 4.6+, Sonnet 4.6;
200,000 for the older ones. A model it does not know (a gateway's, a hand-priced one) gets
200,000, the window Anthropic documents as the standard one for Claude models
(docs.anthropic.com, "Context windows"), unless config `context_window` says less.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from genai_prices import data_snapshot

Sampling = Literal["free", "one_of_temperature_top_p", "none"]
Thinking = Literal["enabled", "adaptive", "disabled"]

EFFORT_ALL = ("low", "medium", "high", "xhigh", "max")
EFFORT_NO_XHIGH = ("low", "medium", "high", "max")
EFFORT_NO_MAX = ("low", "medium", "high")


@dataclass(frozen=True)
class Source:
    url: str
    kind: Literal["recorded", "documented", "reported", "closest", "inferred"]
    note: str = ""


_DOCS = "https://platform.claude.com/docs/en"
S_MODELS = Source(f"{_DOCS}/about-claude/models/overview", "documented", "context, max output")
S_DEPRECATIONS = Source(f"{_DOCS}/about-claude/model-deprecations", "documented", "retired")
S_RELEASE_NOTES = Source(f"{_DOCS}/release-notes/overview", "documented", "retirements")
S_EFFORT = Source(
    f"{_DOCS}/build-with-claude/effort", "documented", "supportedModels; levels per model"
)
S_EFFORT_WIRE = Source(
    "shared/wire/error_400_invalid_request.yaml", "recorded", "xhigh on claude-opus-4-6"
)
S_FAST = Source(
    f"{_DOCS}/build-with-claude/fast-mode",
    "documented",
    "supportedModels: claude-fable-5-2, claude-mythos-5-2, claude-opus-5-5, claude-opus-5; "
    "removed from claude-opus-4-8 on 2026-11-30 ('the API rejects your requests', "
    "code.claude.com/docs/en/fast-mode); the refusal's wording as reported for Opus 4.7 "
    "(github.com/NousResearch/hermes-agent/pull/19517)",
)
S_GEO = Source(
    f"{_DOCS}/manage-claude/data-residency",
    "documented",
    "inference_geo on Opus 4.6, Sonnet 4.6 and later; a 400 on Opus 4.5, Sonnet 4.5, "
    "Haiku 4.5 (AWS user guide, data residency)",
)
S_CACHING = Source(
    f"{_DOCS}/build-with-claude/prompt-caching",
    "documented",
    "4,096 Opus 4.6/4.5, Haiku 4.5; 1,024 Sonnet 4.6/4.5, Opus 4.1/4, Sonnet 4, 3.7; "
    "2,048 Haiku 3.5/3 (as quoted in anthropic-sdk-python#1194)",
)
S_CACHING_5 = Source(
    f"{_DOCS}/about-claude/models/whats-new-opus-5",
    "documented",
    "512 on Opus 5, down from 1,024 on Opus 4.8; 512 on the Fable and Mythos 5 lines",
)
S_CACHING_55 = Source(
    "https://openrouter.ai/docs/cookbook/evaluate-and-optimize/model-migrations/claude-5-5",
    "documented",
    "512 on all three 5.5 models, citing Anthropic's 5.5 migration guides (LiteLLM: 512)",
)
S_CACHING_47 = Source(
    "https://dev.to/creeta/claudes-prompt-cache-fails-silently-below-1024-tokens-1ch1",
    "documented",
    "2,048 for Opus 4.7, 1,024 for Sonnet 5, as the prompt-caching page lists them",
)
S_SAMPLING = Source(
    f"{_DOCS}/about-claude/models/migration-guide",
    "reported",
    "non-default temperature/top_p/top_k refused on Opus 4.7 and later, every 5.x model and "
    "Mythos Preview; wording '`temperature` is deprecated for this model.' from "
    "github.com/Comfy-Org/ComfyUI/issues/13923",
)
S_SAMPLING_ONE = Source(
    "https://github.com/open-webui/functions/pull/9",
    "reported",
    "'temperature and top_p cannot both be specified for this model.' (Opus 4.1, the 4.5 "
    "and 4.6 models)",
)
S_PREFILL = Source(
    f"{_DOCS}/about-claude/models/whats-new-claude-4-6",
    "reported",
    "prefill returns a 400 on Claude 4.6 models and every later one; wording from "
    "github.com/strands-agents/sdk-python/issues/1694",
)
S_THINKING_ALWAYS = Source(
    f"{_DOCS}/models/opus-5-5/whats-new-opus-5-5",
    "documented",
    "thinking can't be disabled (Opus 5.5, Fable 5.1 and later): the documented messages",
)
S_THINKING_FABLE5 = Source(
    f"{_DOCS}/models/fable-5/migration-guide",
    "documented",
    "Fable 5, Mythos 5: both disabled and manual (budget) thinking return a 400",
)
S_THINKING_ADAPTIVE_ONLY = Source(
    "https://openrouter.ai/docs/guides/evaluate-and-optimize/model-migrations/claude-4-7",
    "documented",
    "Opus 4.7 and later: budget_tokens refused, adaptive the only mode when on (Anthropic's "
    "'Migrating to Claude Opus 4.7')",
)
S_THINKING_46 = Source(
    f"{_DOCS}/about-claude/models/whats-new-claude-4-6",
    "documented",
    "4.6: adaptive added, enabled (budget) deprecated but accepted",
)
S_THINKING_EXTENDED = Source(
    f"{_DOCS}/build-with-claude/extended-thinking",
    "documented",
    "budget thinking on Claude 3.7 and the 4.x models before 4.6; no adaptive",
)
S_OPUS5 = Source(
    f"{_DOCS}/models/opus-5/migration-guide",
    "documented",
    "thinking on by default; disabled accepted only at effort high or below",
)
S_HAIKU_55 = Source(
    "https://dev.to/aakira/claude-haiku-55-api-noshi-ifang-16d2",
    "documented",
    "Haiku 5.5 (citing its model page and the pricing page): adaptive by default, disabled "
    "only at effort high or below; non-default sampling and prefill return a 400; 512 minimum",
)
S_55 = Source(
    "https://openrouter.ai/docs/cookbook/evaluate-and-optimize/model-migrations/claude-5-5",
    "documented",
    "5.5 models: adaptive by default, thinking budgets not taken",
)
S_FORCED = Source(
    f"{_DOCS}/build-with-claude/extended-thinking#feature-compatibility",
    "closest",
    "thinking is not compatible with forced tool use; on always-on models forced tool use "
    "returns an error (what's new in Opus 5.5)",
)
S_VISION = Source(
    f"{_DOCS}/build-with-claude/vision",
    "reported",
    "5 MB per image, 8000 px (2000 px above 20 images), jpeg/png/gif/webp; wordings from "
    "github.com/anthropics/claude-code issues 4778, 19631, 24630, 15746, 8184, 56511",
)
S_PDF = Source(f"{_DOCS}/build-with-claude/pdf-support", "closest", "100 pages per request")
S_FAMILY = Source("", "inferred", "no document names this model: its family's value")
S_TOOL_SEARCH = Source(
    f"{_DOCS}/agents-and-tools/tool-use/tool-search-tool",
    "documented",
    "supportedModels: the Fable and Mythos lines, Mythos Preview, Opus 5.5, 5, 4.8-4.5, "
    "Sonnet 5.5, 5, 4.6, 4.5, Haiku 5.5, 4.5",
)
# The models that take the tool search tool (`defer_loading`), by the ids of their rows.
TOOL_SEARCH_MODELS = frozenset(
    (
        "claude-fable-5-2",
        "claude-mythos-5-2",
        "claude-fable-5-1",
        "claude-mythos-5-1",
        "claude-fable-5",
        "claude-mythos-5",
        "claude-mythos-preview",
        "claude-opus-5-5",
        "claude-opus-5",
        "claude-sonnet-5-5",
        "claude-sonnet-5",
        "claude-haiku-5-5",
        "claude-haiku-4-5",
        "claude-opus-4-8",
        "claude-opus-4-7",
        "claude-opus-4-6",
        "claude-sonnet-4-6",
        "claude-opus-4-5",
        "claude-sonnet-4-5",
    )
)


@dataclass(frozen=True)
class ModelRules:
    """What one model accepts. `sources` names the source of each field."""

    model: str
    max_output: int
    effort: tuple[str, ...] | None
    thinking: frozenset[Thinking]
    thinking_default: Literal["off", "adaptive"]
    sampling: Sampling
    prefill: bool
    fast: bool
    inference_geo: bool
    min_cacheable: int
    aliases: tuple[str, ...] = ()
    retired: str | None = None  # the date it was retired; then every request is a 404
    replacement: str | None = None  # what the deprecations page recommends instead
    # Thinking off is refused above this effort (Opus 5: only at `high` or below).
    disabled_up_to_effort: str | None = None
    sources: dict[str, Source] = field(default_factory=dict, compare=False)

    @property
    def thinking_always_on(self) -> bool:
        return "disabled" not in self.thinking


def _rules(
    model: str,
    *,
    max_output: int,
    effort: tuple[str, ...] | None,
    thinking: tuple[Thinking, ...],
    default: Literal["off", "adaptive"] = "off",
    sampling: Sampling,
    prefill: bool,
    fast: bool = False,
    geo: bool,
    cache: int,
    sources: dict[str, Source],
    aliases: tuple[str, ...] = (),
    retired: str | None = None,
    replacement: str | None = None,
    disabled_up_to_effort: str | None = None,
) -> ModelRules:
    return ModelRules(
        model=model,
        max_output=max_output,
        effort=effort,
        thinking=frozenset(thinking),
        thinking_default=default,
        sampling=sampling,
        prefill=prefill,
        fast=fast,
        inference_geo=geo,
        min_cacheable=cache,
        sources={
            "max_output": S_MODELS,
            "effort": S_EFFORT,
            "fast": S_FAST,
            "inference_geo": S_GEO,
            "sampling": S_SAMPLING,
            "prefill": S_PREFILL,
            **sources,
        },
        aliases=aliases,
        retired=retired,
        replacement=replacement,
        disabled_up_to_effort=disabled_up_to_effort,
    )


def _always_on(
    model: str, *, fast: bool = False, sources: dict[str, Source] | None = None
) -> ModelRules:
    """The Fable and Mythos lines and Opus 5.5: thinking always on, adaptive only."""
    return _rules(
        model,
        max_output=128_000,
        effort=EFFORT_ALL,
        thinking=("adaptive",),
        default="adaptive",
        sampling="none",
        prefill=False,
        fast=fast,
        geo=True,
        cache=512,
        sources={"thinking": S_THINKING_ALWAYS, "min_cacheable": S_CACHING_5, **(sources or {})},
    )


def _adaptive(
    model: str,
    *,
    default: Literal["off", "adaptive"],
    cache: int,
    sources: dict[str, Source],
    effort: tuple[str, ...] = EFFORT_ALL,
    fast: bool = False,
    disabled_up_to_effort: str | None = None,
) -> ModelRules:
    """Opus 4.7 and later, Sonnet 5 and later, Haiku 5.5, Mythos Preview: adaptive thinking
    or none (no budget), no sampling parameters, no prefill."""
    return _rules(
        model,
        max_output=128_000,
        effort=effort,
        thinking=("adaptive", "disabled"),
        default=default,
        sampling="none",
        prefill=False,
        geo=True,
        fast=fast,
        cache=cache,
        sources=sources,
        disabled_up_to_effort=disabled_up_to_effort,
    )


def _claude_4_6(model: str, sources: dict[str, Source]) -> ModelRules:
    """Opus 4.6, Sonnet 4.6: every thinking mode (a budget deprecated), no prefill."""
    return _rules(
        model,
        max_output=128_000,
        effort=EFFORT_NO_XHIGH,
        thinking=("enabled", "adaptive", "disabled"),
        sampling="one_of_temperature_top_p",
        prefill=False,
        geo=True,
        cache=4096 if "opus" in model else 1024,
        sources={
            "thinking": S_THINKING_46,
            "min_cacheable": S_CACHING,
            "sampling": S_SAMPLING_ONE,
            **sources,
        },
    )


def _claude_4_5(model: str, effort: tuple[str, ...] | None, cache: int, alias: str) -> ModelRules:
    """Opus, Sonnet and Haiku 4.5: thinking with a budget, prefill, one sampler."""
    return _rules(
        model,
        max_output=64_000,
        effort=effort,
        thinking=("enabled", "disabled"),
        sampling="one_of_temperature_top_p",
        prefill=True,
        geo=False,
        cache=cache,
        aliases=(alias,),
        sources={
            "thinking": S_THINKING_EXTENDED,
            "min_cacheable": S_CACHING,
            "sampling": S_SAMPLING_ONE,
        },
    )


def _legacy(
    model: str, max_output: int, cache: int, retired: str, replacement: str, *aliases: str
) -> ModelRules:
    """A retired model: every request answers 404 (the rest describes it as it was)."""
    return _rules(
        model,
        max_output=max_output,
        effort=None,
        thinking=("disabled",),
        sampling="free",
        prefill=True,
        geo=False,
        cache=cache,
        aliases=aliases,
        retired=retired,
        replacement=replacement,
        sources={"retired": S_DEPRECATIONS, "thinking": S_THINKING_EXTENDED},
    )


_FABLE_5 = {"thinking": S_THINKING_FABLE5}  # always on too: disabled and budgets refused
_55 = {"thinking": S_55, "min_cacheable": S_CACHING_55}

RULES: tuple[ModelRules, ...] = (
    # The Fable and Mythos lines (Mythos shares Fable's specifications).
    _always_on("claude-fable-5-2", fast=True, sources={"effort": S_FAMILY}),
    _always_on("claude-mythos-5-2", fast=True, sources={"effort": S_FAMILY}),
    _always_on("claude-fable-5-1"),
    _always_on("claude-mythos-5-1"),
    _always_on("claude-fable-5", sources=_FABLE_5),
    _always_on("claude-mythos-5", sources=_FABLE_5),
    _adaptive(
        "claude-mythos-preview",
        default="off",
        cache=512,
        effort=EFFORT_NO_XHIGH,
        sources={"thinking": S_FAMILY, "max_output": S_FAMILY, "min_cacheable": S_FAMILY},
    ),
    # Opus.
    _always_on("claude-opus-5-5", fast=True),
    _adaptive(
        "claude-opus-5",
        default="adaptive",
        cache=512,
        disabled_up_to_effort="high",
        fast=True,
        sources={"thinking": S_OPUS5, "min_cacheable": S_CACHING_5},
    ),
    _adaptive(
        "claude-opus-4-8",
        default="off",
        cache=1024,
        sources={"thinking": S_THINKING_ADAPTIVE_ONLY, "min_cacheable": S_CACHING_5},
    ),
    _adaptive(
        "claude-opus-4-7",
        default="off",
        cache=2048,
        sources={"thinking": S_THINKING_ADAPTIVE_ONLY, "min_cacheable": S_CACHING_47},
    ),
    _claude_4_6("claude-opus-4-6", {"effort": S_EFFORT_WIRE}),
    _claude_4_5("claude-opus-4-5", EFFORT_NO_MAX, 4096, "claude-opus-4-5-20251101"),
    # Sonnet.
    _adaptive("claude-sonnet-5-5", default="adaptive", cache=512, sources=_55),
    _adaptive(
        "claude-sonnet-5",
        default="adaptive",
        cache=1024,
        sources={"thinking": S_FAMILY, "min_cacheable": S_CACHING_47},
    ),
    _claude_4_6("claude-sonnet-4-6", {}),
    _claude_4_5("claude-sonnet-4-5", None, 1024, "claude-sonnet-4-5-20250929"),
    # Haiku.
    _adaptive(
        "claude-haiku-5-5",
        default="adaptive",
        cache=512,
        disabled_up_to_effort="high",
        sources={**_55, "thinking": S_HAIKU_55, "sampling": S_HAIKU_55, "prefill": S_HAIKU_55},
    ),
    _claude_4_5("claude-haiku-4-5", None, 4096, "claude-haiku-4-5-20251001"),
    _rules(
        "claude-3-haiku",
        max_output=4096,
        effort=None,
        thinking=("disabled",),
        sampling="free",
        prefill=True,
        geo=False,
        cache=2048,
        aliases=("claude-3-haiku-20240307",),
        sources={"min_cacheable": S_CACHING, "thinking": S_THINKING_EXTENDED},
    ),
    # Retired: every request is a 404 `not_found_error`.
    _legacy(
        "claude-opus-4-1", 32_000, 1024, "2026-08-05", "claude-opus-4-8", "claude-opus-4-1-20250805"
    ),
    _legacy(
        "claude-opus-4-0",
        32_000,
        1024,
        "2026-06-15",
        "claude-opus-4-8",
        "claude-opus-4",
        "claude-opus-4-20250514",
    ),
    _legacy(
        "claude-sonnet-4-0",
        64_000,
        1024,
        "2026-06-15",
        "claude-sonnet-4-6",
        "claude-sonnet-4",
        "claude-sonnet-4-20250514",
    ),
    _legacy(
        "claude-3-7-sonnet",
        64_000,
        1024,
        "2026-02-19",
        "claude-sonnet-4-6",
        "claude-3-7-sonnet-20250219",
        "claude-3-7-sonnet-latest",
    ),
    _legacy(
        "claude-3-5-haiku",
        8192,
        2048,
        "2026-02-19",
        "claude-haiku-4-5",
        "claude-3-5-haiku-20241022",
        "claude-3-5-haiku-latest",
    ),
    _legacy(
        "claude-3-5-sonnet",
        8192,
        1024,
        "2025-10-28",
        "claude-sonnet-4-6",
        "claude-3-5-sonnet-20241022",
    ),
    _legacy(
        "claude-3-opus",
        4096,
        1024,
        "2026-01-05",
        "claude-opus-4-5",
        "claude-3-opus-20240229",
        "claude-3-opus-latest",
    ),
    _legacy(
        "claude-3-sonnet", 4096, 1024, "2025-07-21", "claude-sonnet-4-6", "claude-3-sonnet-20240229"
    ),
    _legacy("claude-2", 4096, 1024, "2025-07-21", "claude-sonnet-4-6", "claude-2.1", "claude-2.0"),
    _legacy("claude-v1", 4096, 1024, "2024-11-06", "claude-sonnet-4-6"),
)

_BY_ID: dict[str, ModelRules] = {
    name: rules for rules in RULES for name in (rules.model, *rules.aliases)
}


def rules_for(model: str) -> ModelRules | None:
    """The row of `model` (an id or an alias), or None: a model the API does not know."""
    return _BY_ID.get(model)


def rules_like(model: str) -> ModelRules | None:
    """The row of `model`, or of the model whose id it extends (a dated or gateway id such
    as `claude-opus-4-6@20260205`): for estimates (the cache planner), never for refusing."""
    if (rules := rules_for(model)) is not None:
        return rules
    names = [name for name in _BY_ID if model.startswith(name)]
    return _BY_ID[max(names, key=len)] if names else None


def takes_tool_search(model: str) -> bool:
    """`model` (an id, an alias, or an id extending one) takes the tool search tool
    (S_TOOL_SEARCH)."""
    rules = rules_like(model)
    return rules is not None and rules.model in TOOL_SEARCH_MODELS


def active_models() -> list[str]:
    """Every model the API serves today, by its id."""
    return [r.model for r in RULES if r.retired is None]


DEFAULT_CONTEXT_WINDOW = 200_000


def context_window(model: str, at_most: int | None = None) -> int:
    """The model's window in tokens, from genai-prices, else DEFAULT_CONTEXT_WINDOW; no
    more than `at_most` (config `context_window`) when given."""
    window = _known_window(model)
    return window if at_most is None else min(window, at_most)


@lru_cache(maxsize=64)
def _known_window(model: str) -> int:
    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(model, None, "anthropic", None)
    except LookupError:
        return DEFAULT_CONTEXT_WINDOW
    return info.context_window or DEFAULT_CONTEXT_WINDOW


def prompt_too_long(tokens: int, window: int) -> str:
    """The API's own message for a request over the window (a 400 invalid_request_error)."""
    return f"prompt is too long: {tokens} tokens > {window} maximum"
