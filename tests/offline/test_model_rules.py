"""The offline model keeps each model's rules (the table in tuiagent/llm/models.py) with the
API's status, error type and wording, answers every recorded error exactly as recorded, and
the agent's own requests never break a rule of the model they go to.

The expected wordings are written out here, not taken from the code under test: a wording
changed there fails here.
"""

from __future__ import annotations

import asyncio
import base64
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import FIXTURES
from tests.support.media import png
from tests.support.session import collect, offline_session
from tests.support.wire import offline_answer as send
from tuiagent.config import DEFAULT_TIER_MODELS, TIERS
from tuiagent.llm.models import EFFORT_ALL, RULES, ModelRules, rules_for
from tuiagent.llm.tokens import estimate_request_tokens, min_cacheable_tokens
from tuiagent.offline.rules import model_ids

WIRE = FIXTURES / "wire"
ACTIVE = [r for r in RULES if r.retired is None]
RETIRED = [r for r in RULES if r.retired is not None]


def base(rules: ModelRules, **extra: Any) -> dict[str, Any]:
    return {
        "model": rules.model,
        "max_tokens": 2048,
        "messages": [{"role": "user", "content": "Hi"}],
        **extra,
    }


def refused(body: dict[str, Any], message: str, status: int = 400) -> None:
    response = send(body)
    assert response.status_code == status, response.text
    kind = "invalid_request_error" if status == 400 else "not_found_error"
    assert response.json()["error"] == {"type": kind, "message": message}


def accepted(body: dict[str, Any]) -> None:
    response = send(body)
    assert response.status_code == 200, response.text


# --- every recorded error, exactly ------------------------------------------------------


def recorded_errors() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for file in sorted(WIRE.glob("*.yaml")):
        for i, item in enumerate(yaml.safe_load(file.read_text())["interactions"]):
            status = item["response"]["status"]
            if (status["code"] if isinstance(status, dict) else status) != 200:
                found.append((f"{file.stem}[{i}]", item))
    return found


def test_the_recorded_errors_are_found() -> None:
    # shared/wire's two recorded refusals; the issue threads' 429s, 529s and mid-stream
    # errors are load, not answers to a request (no request was recorded with them): the
    # loopback API's faults replay those (tests/support/loopback.py)
    assert [name for name, _ in recorded_errors()] == [
        "error_400_invalid_request[0]",
        "error_404_not_found_count_tokens[0]",
    ]
    threads = json.loads((WIRE / "errors_from_issue_threads.json").read_text())["examples"]
    assert all("request" not in example for example in threads)


@pytest.mark.parametrize(("name", "item"), recorded_errors())
def test_every_recorded_error_is_answered_exactly(name: str, item: dict[str, Any]) -> None:
    request, recorded = item["request"], item["response"]
    path = "/v1/messages/count_tokens" if "count_tokens" in request["uri"] else "/v1/messages"
    response = send(request["parsed_body"], path)
    assert response.status_code == recorded["status"]["code"]
    ours, theirs = response.json(), recorded["parsed_body"]
    assert ours["type"] == theirs["type"] == "error"
    assert ours["error"] == theirs["error"]  # type and message, exactly
    assert ours["request_id"].startswith("req_")


# --- the table ------------------------------------------------------------------------


def test_the_table_covers_every_model_the_sdk_lists_and_genai_prices_prices() -> None:
    from genai_prices.data_snapshot import get_snapshot

    from tuiagent.offline.rules import sdk_model_ids

    missing = [m for m in sdk_model_ids() if rules_for(m) is None]
    anthropic = next(p for p in get_snapshot().providers if p.id == "anthropic")
    missing += [m.id for m in anthropic.models if rules_for(m.id) is None]
    assert missing == []
    for rules in RULES:  # every rule has its source, with a kind
        assert {"max_output", "effort", "thinking", "sampling", "prefill"} <= set(rules.sources)
        assert all(s.kind for s in rules.sources.values())


def test_the_models_list_is_what_the_api_serves() -> None:
    listed = model_ids()
    assert set(listed) == {r.model for r in ACTIVE} | {
        "claude-haiku-4-5-20251001",
        "claude-opus-4-5-20251101",
    }
    assert not {r.model for r in RETIRED} & set(listed)


@pytest.mark.parametrize("rules", RETIRED, ids=lambda r: r.model)
def test_a_retired_model_is_a_404_by_every_name(rules: ModelRules) -> None:
    for name in (rules.model, *rules.aliases):
        refused({**base(rules), "model": name}, f"model: {name}", status=404)
        counted = send(
            {"model": name, "messages": [{"role": "user", "content": "Hi"}]},
            "/v1/messages/count_tokens",
        )
        assert counted.status_code == 404 and counted.json()["error"]["message"] == f"model: {name}"


def test_an_unknown_model_is_a_404_for_messages_too() -> None:
    refused(
        {**base(ACTIVE[0]), "model": "claude-does-not-exist"}, "model: claude-does-not-exist", 404
    )


@pytest.mark.parametrize("rules", ACTIVE, ids=lambda r: r.model)
def test_max_output(rules: ModelRules) -> None:
    accepted(base(rules, max_tokens=rules.max_output))
    limit = rules.max_output
    refused(
        base(rules, max_tokens=limit + 1),
        f"max_tokens: {limit + 1} > {limit}, which is the maximum allowed number of output "
        f"tokens for {rules.model}",
    )


THINKING = {
    "enabled": {"type": "enabled", "budget_tokens": 1024},
    "adaptive": {"type": "adaptive"},
    "disabled": {"type": "disabled"},
}


@pytest.mark.parametrize("rules", ACTIVE, ids=lambda r: r.model)
@pytest.mark.parametrize("kind", list(THINKING))
def test_thinking_modes(rules: ModelRules, kind: str) -> None:
    body = base(rules, thinking=THINKING[kind])
    if kind in rules.thinking:
        accepted(body)
        return
    message = f'"thinking.type.{kind}" is not supported for this model.'
    if "adaptive" in rules.thinking:
        message += (
            ' Use "thinking.type.adaptive" and "output_config.effort" to control thinking behavior.'
        )
    refused(body, message)


@pytest.mark.parametrize("rules", ACTIVE, ids=lambda r: r.model)
@pytest.mark.parametrize("level", EFFORT_ALL)
def test_effort_levels(rules: ModelRules, level: str) -> None:
    body = base(rules, output_config={"effort": level})
    if rules.effort is None:
        refused(body, "This model does not support the effort parameter.")
    elif level in rules.effort:
        accepted(body)
    else:
        supported = ", ".join(sorted(rules.effort))
        refused(
            body,
            f"This model does not support effort level '{level}'. Supported levels: {supported}.",
        )


@pytest.mark.parametrize("model", ["claude-opus-5", "claude-haiku-5-5"])
def test_thinking_off_only_up_to_effort_high(model: str) -> None:
    rules = rules_for(model)
    assert rules is not None
    for level in ("low", "medium", "high"):
        accepted(base(rules, thinking={"type": "disabled"}, output_config={"effort": level}))
    accepted(base(rules, thinking={"type": "disabled"}))  # effort defaults to high
    for level in ("xhigh", "max"):
        refused(
            base(rules, thinking={"type": "disabled"}, output_config={"effort": level}),
            f"\"thinking.type.disabled\" is not supported with effort '{level}' on this model. "
            "Use effort 'high' or below, or \"thinking.type.adaptive\".",
        )


@pytest.mark.parametrize("rules", ACTIVE, ids=lambda r: r.model)
def test_sampling_parameters(rules: ModelRules) -> None:
    off = {"thinking": {"type": "disabled"}} if "disabled" in rules.thinking else {}
    if rules.sampling == "none":
        refused(base(rules, temperature=0.5), "`temperature` is deprecated for this model.")
        refused(base(rules, top_p=0.9), "`top_p` is deprecated for this model.")
        refused(base(rules, top_k=5), "`top_k` is deprecated for this model.")
        accepted(base(rules, temperature=1))  # the default is no change
        return
    accepted(base(rules, temperature=0.5, **off))
    accepted(base(rules, top_k=5, **off))
    both = base(rules, temperature=0.5, top_p=0.9, **off)
    if rules.sampling == "one_of_temperature_top_p":
        refused(both, "temperature and top_p cannot both be specified for this model.")
    else:
        accepted(both)
    if "enabled" in rules.thinking:
        refused(
            base(rules, temperature=0.5, thinking=THINKING["enabled"]),
            "temperature may only be set to 1 when thinking is enabled.",
        )


@pytest.mark.parametrize("rules", ACTIVE, ids=lambda r: r.model)
def test_prefill(rules: ModelRules) -> None:
    off = {"thinking": {"type": "disabled"}} if "disabled" in rules.thinking else {}
    body = base(rules, **off)
    body["messages"] = [*body["messages"], {"role": "assistant", "content": "The answer is"}]
    if rules.prefill:
        accepted(body)
    else:
        refused(
            body,
            "This model does not support assistant message prefill. The conversation must end "
            "with a user message.",
        )


TOOL = {"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}


@pytest.mark.parametrize("rules", ACTIVE, ids=lambda r: r.model)
@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "get_weather"}])
def test_forced_tool_choice_with_thinking(rules: ModelRules, choice: dict[str, Any]) -> None:
    message = "Thinking may not be enabled when tool_choice forces tool use."
    plain = base(rules, tools=[TOOL], tool_choice=choice)
    if rules.thinking_always_on:
        refused(plain, message)
    else:
        accepted(plain)
    for kind in ("enabled", "adaptive"):
        if kind in rules.thinking:
            refused({**plain, "thinking": THINKING[kind]}, message)


@pytest.mark.parametrize("rules", ACTIVE, ids=lambda r: r.model)
def test_fast_mode_and_inference_geo(rules: ModelRules) -> None:
    fast = base(rules, speed="fast")
    if rules.fast:
        accepted(fast)
    else:
        refused(fast, f"'{rules.model}' does not support the `speed` parameter.")
    accepted(base(rules, speed="standard"))
    geo = base(rules, inference_geo="us")
    if rules.inference_geo:
        accepted(geo)
    else:
        refused(geo, f"inference_geo: data residency is not supported for {rules.model}")


@pytest.mark.parametrize("rules", ACTIVE, ids=lambda r: r.model)
def test_the_minimum_cacheable_length(rules: ModelRules) -> None:
    assert min_cacheable_tokens(rules.model) == rules.min_cacheable

    def written(words: int) -> tuple[int, int]:
        text = "cache " * words
        body = base(rules, max_tokens=16)
        body["messages"] = [
            {
                "role": "user",
                "content": [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}],
            }
        ]
        response = send(body)
        assert response.status_code == 200, response.text
        return estimate_request_tokens(body), response.json()["usage"][
            "cache_creation_input_tokens"
        ]

    words = rules.min_cacheable
    while written(words)[0] >= rules.min_cacheable:
        words -= 8
    assert written(words)[1] == 0  # just below: nothing cached
    while written(words)[0] < rules.min_cacheable:
        words += 1
    assert written(words)[1] > 0  # at the minimum: written


# --- images and PDFs ------------------------------------------------------------------


def image(data: bytes, media_type: str = "image/png") -> dict[str, Any]:
    encoded = base64.b64encode(data).decode()
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": media_type, "data": encoded},
    }


def with_content(*blocks: dict[str, Any], model: str = "claude-opus-5-5") -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": [*blocks, {"type": "text", "text": "What is it?"}]}
        ],
    }


@pytest.mark.parametrize("rules", ACTIVE, ids=lambda r: r.model)
def test_images(rules: ModelRules) -> None:
    at = "messages.0.content.0.image.source.base64"
    accepted(with_content(image(png(64, 48)), model=rules.model))
    refused(
        with_content(image(png(64, 48), "image/bmp"), model=rules.model),
        f"{at}.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'",
    )
    refused(
        with_content(image(png(64, 48), "image/jpeg"), model=rules.model),
        f"{at}.data: Image does not match the provided media type image/jpeg",
    )
    refused(
        with_content(image(b"not an image at all"), model=rules.model), "Could not process image"
    )
    refused(
        with_content(image(png(8001, 10)), model=rules.model),
        f"{at}.data: At least one of the image dimensions exceed max allowed size: 8000 pixels",
    )
    big = image(png(10, 10))
    big["source"]["data"] += "A" * (5 * 1024 * 1024)
    sent = len(big["source"]["data"])
    refused(
        with_content(big, model=rules.model),
        f"{at}: image exceeds 5 MB maximum: {sent} bytes > 5242880 bytes",
    )


def test_many_images_take_2000_pixels_a_side_and_tool_results_are_checked_too() -> None:
    twenty = [image(png(2001, 10)) for _ in range(20)]
    accepted(with_content(*twenty))
    refused(
        with_content(*twenty, image(png(64, 64))),
        "messages.0.content.0.image.source.base64.data: At least one of the image dimensions "
        "exceed max allowed size for many-image requests: 2000 pixels",
    )
    body = with_content(model="claude-haiku-4-5")
    body["messages"] = [
        {"role": "user", "content": "Look"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "shot", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [image(png(9000, 9))]}
            ],
        },
    ]
    refused(
        body,
        "messages.2.content.0.tool_result.content.0.image.source.base64.data: At least one of "
        "the image dimensions exceed max allowed size: 8000 pixels",
    )


def pdf(pages: int) -> dict[str, Any]:
    data = b"%PDF-1.7\n" + b"".join(
        b"%d 0 obj << /Type /Page >> endobj\n" % i for i in range(pages)
    )
    data += b"99 0 obj << /Type /Pages /Count %d >> endobj\n%%%%EOF\n" % pages
    encoded = base64.b64encode(data).decode()
    return {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": encoded},
    }


def test_pdfs() -> None:
    accepted(with_content(pdf(100)))
    refused(with_content(pdf(101)), "A maximum of 100 PDF pages may be provided.")
    bad = pdf(1)
    bad["source"]["data"] = base64.b64encode(b"<html>not a pdf</html>").decode()
    refused(with_content(bad), "The PDF specified was not valid.")


# --- the agent's own requests ---------------------------------------------------------


AGENT_PROMPTS = [
    "list the files here",
    "read README.md and notes.txt",
    "search for TODO",
    "read data.csv",  # a large result: compressed, and summarised by the fast tier
]


@pytest.mark.parametrize(
    "tiers",
    [dict(DEFAULT_TIER_MODELS)] + [dict.fromkeys(TIERS, r.model) for r in ACTIVE],
    ids=["tier-defaults"] + [r.model for r in ACTIVE],
)
def test_the_agents_requests_keep_the_rules_of_their_model(
    tiers: dict[str, str], workspace: Path, tmp_path: Path
) -> None:
    """Every call the agent makes (routing's classifier, the turns and their tools, a result's
    summary, a compaction) to every model goes through the offline model, which refuses
    what that model refuses: none may be refused."""
    # The Mythos line shares Fable's prices (its model pages); genai-prices has only 5.2.
    fable = {"input_mtok": 10, "output_mtok": 50, "cache_read_mtok": 1, "cache_write_mtok": 12.5}
    unpriced = ("claude-mythos-5-1", "claude-mythos-5", "claude-mythos-preview")
    rates = {**fable, "cache_write_1h_mtok": 20}
    prices = {m: {k: Decimal(str(v)) for k, v in rates.items()} for m in unpriced}
    session = offline_session(
        workspace,
        tmp_path / "logs",
        tiers=tiers,
        router_classifier=True,
        summarize_results=True,
        max_cost_usd=Decimal(5),
        prices=prices,
    )

    async def run() -> None:
        for prompt in AGENT_PROMPTS:
            await collect(session, prompt)
        for tier in TIERS:  # each tier's model answers a turn of its own
            session.agent.set_tier(tier)
            await collect(session, "list the files here")
        [e async for e in session.agent.compact()]
        session.agent.finish()

    asyncio.run(run())
    (log,) = (tmp_path / "logs").glob("*.jsonl")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    failed = [r for r in records if r["type"] in ("attempt", "refused")]
    assert failed == []
    turns = [r for r in records if r["type"] == "turn"]
    assert {t["model"] for t in turns} == set(tiers.values())  # every tier's model was called
    assert {"classify", "agent", "summarize", "compact"} <= {t["purpose"] for t in turns}


# --- the table in the manual (docs/offline.md) ----------------------------------------------------------


def rules_markdown() -> str:
    """The table as the manual shows it: one row a model, then every source."""

    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    rows = [
        "| model | max output | effort | thinking (default) | sampling | prefill | fast | "
        "inference_geo | min cache |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    sampling = {"free": "any", "one_of_temperature_top_p": "temperature or top_p", "none": "no"}
    for r in ACTIVE:
        modes = "/".join(m for m in ("enabled", "adaptive", "disabled") if m in r.thinking)
        if r.disabled_up_to_effort:
            modes = modes.replace("disabled", f"disabled (effort <= {r.disabled_up_to_effort})")
        effort = ", ".join(r.effort) if r.effort else "no"
        rows.append(
            f"| `{r.model}` | {r.max_output:,} | {effort} | {modes} ({r.thinking_default}) | "
            f"{sampling[r.sampling]} | {yes(r.prefill)} | {yes(r.fast)} | "
            f"{yes(r.inference_geo)} | {r.min_cacheable:,} |"
        )
    retired = ", ".join(f"`{r.model}` ({r.retired})" for r in RETIRED)
    rows += ["", f'Retired (a 404 `not_found_error`, "model: ID"): {retired}.', ""]
    covered: dict[tuple[str, str, str, str], list[str]] = {}
    for r in RULES:
        for rule, source in r.sources.items():
            covered.setdefault((rule, source.kind, source.url, source.note), []).append(r.model)
    for (rule, kind, url, note), models in sorted(covered.items()):
        names = (
            "all the retired models"
            if set(models) == {m.model for m in RETIRED}
            else ", ".join(models)
        )
        where = f"<{url}>" if url.startswith("http") else f"`{url}`" if url else "no source"
        rows.append(f"- {rule} of {names}: {kind}, {where}: {note}")
    return "\n".join(rows)


def test_the_manual_shows_the_table_and_every_source() -> None:
    root = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
    page = (root / "docs" / "offline.md").read_text(encoding="utf-8")
    start, end = "<!-- model-rules -->\n", "\n<!-- /model-rules -->"
    shown = page[page.index(start) + len(start) : page.index(end)]
    assert shown == rules_markdown()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", "0.5", "temperature: Input should be a valid number"),
        ("temperature", True, "temperature: Input should be a valid number"),
        ("temperature", 1.5, "temperature: Input should be less than or equal to 1"),
        ("top_p", -0.1, "top_p: Input should be greater than or equal to 0"),
        ("top_k", 2.5, "top_k: Input should be a valid integer"),
        (
            "output_config",
            {"effort": "extreme"},
            "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'",
        ),
        ("speed", "ludicrous", "speed: Input should be 'standard' or 'fast'"),
        ("model", 7, "model: Input should be a valid string"),
    ],
)
def test_wrong_types_are_the_schemas_400_before_any_model_rule(
    field: str, value: Any, message: str
) -> None:
    refused({**base(rules_for("claude-haiku-4-5") or ACTIVE[0]), field: value}, message)
