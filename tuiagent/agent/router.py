"""The router: which model tier answers each call, and why.

Rules, in the order they apply (a pinned tier overrides all of them):

1. purpose: helper calls (summaries, classification) go to the fast tier; an agent call
   that matches one of the config's own rules (`[[router_rules]]`, first match) goes to
   that rule's tier, and rule 2 is skipped;
2. the request: words that ask for reasoning (design, debug, prove, refactor, why, plan, ...),
   code and length point up; lookups (list, show, find, what is, ...) and short requests
   point to fast; with the optional classifier on (config `router_classifier`), a helper call
   on the fast tier names the tier instead, and the rules decide only when it names none;
3. budget: with less than `budget_floor` of the cap left, step down one tier;
4. cache: the prompt cache is per model, so before moving a conversation off a warm model
   the predicted cost of this call is compared on each candidate; when staying on a warm,
   more capable model costs less than moving, the call stays;
5. escalation: a failed fast-tier step is redone one tier up, once per request; the Agent
   detects the failure (`step_failure`) and passes the raised floor here.

Every decision carries a short reason and the candidates weighed, each with its predicted
cost: the request's input tokens (the one local estimate) priced as genai-prices prices that
model, the model's warm prefix at the cache-read rate and the rest at the cache-write rate
(or the input rate below the model's minimum cacheable length), plus an expected output.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from tuiagent.config import TIERS, RouterRule
from tuiagent.cost.pricing import Pricer, usd
from tuiagent.llm.tokens import estimate_tokens, min_cacheable_tokens

DEFAULT_BUDGET_FLOOR = Decimal("0.2")
# Output tokens assumed for a call before the run has any of its own to average.
DEFAULT_EXPECTED_OUTPUT_TOKENS = 300

# A request this long (estimated tokens) asks for more than a lookup; this short, less.
LONG_REQUEST_TOKENS = 300
SHORT_REQUEST_TOKENS = 40

_REASONING = re.compile(
    r"\b(design\w*|debug\w*|prove|proof|refactor\w*|why|plan(?:s|ning)?|architect\w*|"
    r"trade-?offs?|explain\w*|analy[sz]\w*|compar\w*|evaluat\w*|optimi[sz]\w*|migrat\w*|"
    r"strateg\w*|diagnos\w*|investigat\w*|root\s+cause|implement\w*|review\w*)\b",
    re.IGNORECASE,
)
_LOOKUP = re.compile(
    r"\b(list|show|find|search|grep|read|look\s+up|what\s+is|what's|which|where|count|"
    r"how\s+many|open|print|display|summar\w*|tl;dr)\b",
    re.IGNORECASE,
)
# Each alternative starts at a word boundary or a fixed string, and no quantifier nests:
# matching stays linear in the text (see READ_SLICE_CHARS for how much text that is).
_CODE = re.compile(
    r"```|^[ \t]{4,}\S|\bdef[ \t]+\w+\(|\bclass[ \t]+\w+[:(]|\bfunction[ \t]+\w+\(|=>|"
    r"\b\w+\([^()\n]*\)[ \t]*[{;:]|Traceback \(most recent call last\)",
    re.MULTILINE,
)
# A whole run of path characters holding a dot or a slash (tried only where a run starts);
# it is a file name or path ("docs/design.md", whose words ask for nothing) when it holds a
# slash or ends in an extension.
_PATH_RUN = re.compile(r"(?<![\w./~-])[\w./~-]*[./][\w./~-]*")
_EXTENSION = re.compile(r"\w\.[A-Za-z0-9]{1,8}\Z")
# The rules read at most this much of a request: its head and its tail. A pasted log or a
# base64 blob in the middle asks for nothing, and routing stays well under a millisecond
# per request whatever its size (bench/bench_router_input.py).
READ_SLICE_CHARS = 4_096
# A model declining the request, in its first sentences (the API's own refusal is a stop reason).
_REFUSAL = re.compile(
    r"\bI(?:\s+am|'m|’m)?\s+(?:can(?:no|'|’)t|could\s*(?:not|n't|n’t)|unable\s+to|won(?:'|’)t|"
    r"not\s+able\s+to)\s+(?:help|assist|do\s+that|answer|complete|map\s+this\s+request)"
    r"|\bI\s+(?:must|have\s+to)\s+decline\b",
    re.IGNORECASE,
)


def tier_index(tier: str) -> int:
    return TIERS.index(tier)


def step_down(tier: str) -> str:
    return TIERS[max(0, tier_index(tier) - 1)]


def step_up(tier: str) -> str:
    return TIERS[min(len(TIERS) - 1, tier_index(tier) + 1)]


class CacheView(Protocol):
    """What the router needs to know of the prompt cache."""

    def cached_prefix_tokens(self, model: str, now: float) -> int:
        """Tokens of this model's cached prefix for the conversation; 0 when cold or expired."""
        ...


@dataclass(frozen=True)
class Candidate:
    tier: str
    model: str
    predicted_cost: Decimal
    cached_prefix_tokens: int

    def as_record(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "model": self.model,
            "predicted_cost_usd": usd(self.predicted_cost),
            "cached_prefix_tokens": self.cached_prefix_tokens,
        }


@dataclass(frozen=True)
class RouteDecision:
    tier: str
    model: str
    reason: str
    candidates: tuple[Candidate, ...] = field(default_factory=tuple)

    def candidates_record(self) -> list[dict[str, Any]]:
        return [c.as_record() for c in self.candidates]


@dataclass(frozen=True)
class RequestKind:
    """What the rules read in the user's request: the tier it asks for, and why."""

    tier: str
    why: str


def _quoted(words: list[str], most: int = 3) -> str:
    shown = ", ".join(f"'{w}'" for w in words[:most])
    return shown + (", ..." if len(words) > most else "")


def _distinct(pattern: re.Pattern[str], text: str) -> list[str]:
    seen: dict[str, None] = {}
    for m in pattern.finditer(text):
        seen.setdefault(re.sub(r"\s+", " ", m.group(1).lower()), None)
    return list(seen)


def _bounded(text: str) -> str:
    """The head and tail of `text`, at most 2 x READ_SLICE_CHARS characters."""
    if len(text) <= 2 * READ_SLICE_CHARS:
        return text
    return f"{text[:READ_SLICE_CHARS]}\n{text[-READ_SLICE_CHARS:]}"


def _unless_path(m: re.Match[str]) -> str:
    run = m.group().rstrip(".-~")
    return " " if "/" in run or _EXTENSION.search(run) else m.group()


def _without_paths(text: str) -> str:
    """The request's words, file names and paths taken out (their words ask for nothing)."""
    return _PATH_RUN.sub(_unless_path, _bounded(text))


def request_words(text: str) -> list[str]:
    """The router's own words (reasoning and lookups) in a request, file names aside."""
    words = _without_paths(text)
    return _distinct(_REASONING, words) + _distinct(_LOOKUP, words)


def tools_so_far(messages: list[dict[str, Any]]) -> tuple[str, ...]:
    """The tools called for the latest user request (since its message), in order."""
    names: list[str] = []
    for message in messages:
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        if message.get("role") == "user" and any(b.get("type") == "text" for b in blocks):
            names = []
        names += [str(b.get("name")) for b in blocks if b.get("type") == "tool_use"]
    return tuple(names)


def rule_matches(rule: RouterRule, prompt: str, tools: tuple[str, ...], input_tokens: int) -> bool:
    if rule.when_words:
        text = _without_paths(prompt)
        if not any(re.search(rf"\b{re.escape(w)}\b", text, re.IGNORECASE) for w in rule.when_words):
            return False
    if rule.when_tools and not (tools and set(tools) <= set(rule.when_tools)):
        return False
    return rule.max_input_tokens is None or input_tokens <= rule.max_input_tokens


def classify_request(text: str) -> RequestKind:
    """The tier a user's request asks for, by rules on its words, code and length: on its
    first and last READ_SLICE_CHARS characters, so the cost is bounded whatever its size."""
    read = _bounded(text)
    words = _PATH_RUN.sub(_unless_path, read)
    reasoning = _distinct(_REASONING, words)
    lookups = _distinct(_LOOKUP, words)
    code = bool(_CODE.search(read))
    tokens = estimate_tokens(read)
    if len(read) < len(text):  # the middle, counted at the rate of the slice read
        tokens = tokens * len(text) // len(read)
    long = tokens >= LONG_REQUEST_TOKENS
    if reasoning and (code or long):
        extra = " with code" if code else (f", {tokens:,} tokens" if long else "")
        return RequestKind("deep", f"reasoning ({_quoted(reasoning)}){extra}")
    if reasoning:
        return RequestKind("balanced", f"reasoning ({_quoted(reasoning)})")
    if code:
        return RequestKind("balanced", "code in the request")
    if long:
        return RequestKind("balanced", f"long request ({tokens:,} tokens)")
    if lookups:
        return RequestKind("fast", f"lookup ({_quoted(lookups)})")
    if tokens <= SHORT_REQUEST_TOKENS:
        return RequestKind("fast", "short request, no reasoning asked")
    return RequestKind("balanced", "no clear signal")


CLASSIFIER_PROMPT = (
    "You route requests to a model tier. Answer with one word: fast (lookups, listing, "
    "reading, short factual answers, summaries), balanced (reasoning, debugging, code "
    "changes, plans), or deep (hard multi-step design or proofs over code or long material)."
)
_TIER_WORD = re.compile(r"\b(fast|balanced|deep)\b", re.IGNORECASE)


def tier_named(answer: str) -> str:
    """The tier a classifier's answer names, or "" when it names none."""
    m = _TIER_WORD.search(answer)
    return m.group(1).lower() if m else ""


def step_failure(text: str, stop_reason: str | None, has_tool_calls: bool) -> str | None:
    """Why a step failed (an empty answer, a refusal), or None when it did its job."""
    if stop_reason == "refusal":
        return "a refusal"
    if has_tool_calls:
        return None
    if not text.strip():
        return "an empty answer"
    if _REFUSAL.search(text[:400]):
        return "a refusal"
    return None


class Router:
    """Chooses the tier of each call. Pure: everything it weighs is passed in."""

    def __init__(
        self,
        tiers: Mapping[str, str],
        pricer: Pricer,
        *,
        budget_floor: Decimal = DEFAULT_BUDGET_FLOOR,
        rules: tuple[RouterRule, ...] = (),
    ) -> None:
        self.tiers = dict(tiers)
        self.pricer = pricer
        self.budget_floor = budget_floor
        self.rules = rules

    def predict_cost(
        self, model: str, input_tokens: int, cached_prefix: int, output_tokens: int
    ) -> Decimal:
        """What one call of `input_tokens` would cost on `model` with this much of it cached."""
        rates = self.pricer.rates(model, input_tokens)
        read = min(cached_prefix, input_tokens)
        rest = input_tokens - read
        # The rolling breakpoint writes everything past the cached prefix, when long enough.
        rest_rate = (
            rates.cache_write_5m if input_tokens >= min_cacheable_tokens(model) else rates.input
        )
        return read * rates.cache_read + rest * rest_rate + output_tokens * rates.output

    def choose(
        self,
        *,
        prompt: str,
        input_tokens: int,
        cache: CacheView,
        now: float,
        pin: str = "auto",
        purpose: str = "agent",
        spent: Decimal = Decimal(0),
        cap: Decimal | None = None,
        floor: str | None = None,
        floor_reason: str = "",
        expected_output_tokens: int = DEFAULT_EXPECTED_OUTPUT_TOKENS,
        classified: str | None = None,
        tools_used: tuple[str, ...] = (),
    ) -> RouteDecision:
        """The tier for one call of `input_tokens` (estimated) about `prompt`, and why.
        `classified`: the classifier's tier for the request ("" when it named none);
        `tools_used`: the tools called for it so far (the config's rules read them)."""
        candidates = tuple(
            Candidate(
                tier,
                model,
                self.predict_cost(model, input_tokens, cached, expected_output_tokens),
                cached,
            )
            for tier, model in ((t, self.tiers[t]) for t in TIERS)
            for cached in (cache.cached_prefix_tokens(model, now),)
        )
        by_tier = {c.tier: c for c in candidates}

        def decide(tier: str, reason: str) -> RouteDecision:
            return RouteDecision(tier, self.tiers[tier], reason, candidates)

        if pin != "auto":
            return decide(pin, f"pinned to {pin}")
        rule = next(
            (
                (i, r)
                for i, r in enumerate(self.rules, 1)
                if purpose == "agent" and rule_matches(r, prompt, tools_used, input_tokens)
            ),
            None,
        )
        if purpose != "agent":
            tier, reasons = "fast", [f"helper call ({purpose})"]
        elif rule is not None:
            tier, reasons = rule[1].tier, [f"config router rule {rule[0]}"]
        elif classified in TIERS:
            tier, reasons = str(classified), [f"classifier: {classified}"]
        else:
            kind = classify_request(prompt)
            tier, reasons = kind.tier, [kind.why]
            if classified is not None:
                reasons.insert(0, "classifier named no tier")
        if cap is not None and cap > 0 and (cap - spent) / cap < self.budget_floor:
            left = max(Decimal(0), (cap - spent) / cap)
            lower = step_down(tier)
            if lower != tier:
                reasons.append(
                    f"budget: {left:.0%} of the cap left (< {self.budget_floor:.0%}), "
                    f"down from {tier}"
                )
                tier = lower
        if floor is not None and tier_index(floor) > tier_index(tier):
            tier = floor
            reasons.append(floor_reason or f"raised to {floor}")
        wanted = by_tier[tier]
        # Cache: a warm, at-least-as-capable model that costs less for this call keeps it.
        warm = [
            c
            for c in candidates
            if c.cached_prefix_tokens > 0
            and tier_index(c.tier) > tier_index(tier)
            and c.predicted_cost < wanted.predicted_cost
        ]
        if warm:
            stay = min(warm, key=lambda c: c.predicted_cost)
            reasons.append(
                f"cache: stays on warm {stay.tier} ({stay.cached_prefix_tokens:,} tokens "
                f"cached), ${stay.predicted_cost:.4f} vs ${wanted.predicted_cost:.4f} on {tier}"
            )
            tier = stay.tier
        return decide(tier, f"{'; '.join(reasons)} -> {tier}")
