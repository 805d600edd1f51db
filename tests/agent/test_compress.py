"""Compression of large tool results, and recall of their originals."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.large_results import (
    JSON_ITEMS,
    LOG_ERRORS_MESSAGE,
    json_api_response,
    search_result,
    service_log,
    source_file,
)
from tuiagent.agent.compress import Compressor
from tuiagent.agent.tools import ToolError
from tuiagent.llm.tokens import estimate_tokens

BOUND = 1000


def body(text: str) -> str:
    """A compressed result without its note line."""
    assert text.startswith("[r")
    return text.split("\n", 1)[1]


# --- JSON keeps its structure ---------------------------------------------------------

_keys = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=12)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**9), 10**9)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=60)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=30) | st.dictionaries(_keys, inner, max_size=12),
    max_leaves=120,
)


def _make_records(seed: int, count: int) -> list[dict[str, Any]]:
    """Bulk that pushes a document over the bound, cheap for hypothesis to generate."""
    rng = random.Random(seed)
    fields = [f"f{i}" for i in range(rng.randint(1, 10))]
    return [
        {
            f: rng.choice([rng.random(), rng.randint(-99, 99), "x" * rng.randint(0, 30), None])
            for f in rng.sample(fields, rng.randint(1, len(fields)))
        }
        for _ in range(count)
    ]


_records = st.builds(_make_records, st.integers(0, 2**32), st.integers(200, 600))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(top=st.dictionaries(_keys, _values, min_size=1, max_size=20), bulk=_records)
def test_compressed_json_parses_and_keeps_every_top_level_key(
    top: dict[str, Any], bulk: list[dict[str, Any]]
) -> None:
    doc = {**top, "records": bulk}
    text = json.dumps(doc, indent=2)
    out = Compressor(BOUND).compress("read_file", text)
    assert out.compressed_tokens <= BOUND < out.original_tokens
    assert out.method == "json" and estimate_tokens(out.text) == out.compressed_tokens
    shown = json.loads(body(out.text))
    assert list(shown) == list(doc)  # every top-level key, in order
    # The array's length survives, shortened or replaced by a placeholder.
    assert re.search(rf"\b{len(bulk)}\b", json.dumps(shown["records"]))


@settings(max_examples=30, deadline=None)
@given(items=_records)
def test_compressed_json_array_parses_and_says_how_many(items: list[Any]) -> None:
    out = Compressor(BOUND).compress("read_file", json.dumps(items))
    assert out.compressed_tokens <= BOUND and out.method == "json"
    shown = json.loads(body(out.text))
    assert isinstance(shown, list) and f"({len(items)} in all)" in shown[-1]


# --- the fixed set of large results ---------------------------------------------------


@pytest.fixture(scope="module")
def fixed_set(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    import asyncio

    root = tmp_path_factory.mktemp("search")
    return {
        "json": ("read_file", json_api_response()),
        "log": ("read_file", service_log(5000)),
        "source": ("read_file", source_file(3000)),
        "search": ("search_files", asyncio.run(search_result(root))),
    }


def test_fixed_set_sizes(fixed_set: dict[str, tuple[str, str]]) -> None:
    assert 45_000 <= len(fixed_set["json"][1]) <= 55_000
    assert len(fixed_set["log"][1].splitlines()) == 5000
    assert len(fixed_set["source"][1].splitlines()) == 3000
    assert fixed_set["search"][1].startswith("2000 matches for 'TODO'")


@pytest.mark.parametrize(
    ("name", "method"), [("json", "json"), ("log", "log"), ("source", "code"), ("search", "search")]
)
def test_each_large_result_is_five_times_smaller_and_within_the_bound(
    fixed_set: dict[str, tuple[str, str]], name: str, method: str
) -> None:
    tool, text = fixed_set[name]
    out = Compressor(BOUND).compress(tool, text)
    assert out.method == method and out.result_id == "r1"
    assert out.original_tokens == estimate_tokens(text)
    assert out.compressed_tokens == estimate_tokens(out.text) <= BOUND
    assert out.original_tokens >= 5 * out.compressed_tokens
    assert 'expand_result(result_id="r1"' in out.text.splitlines()[0]


def test_json_keeps_the_facts(fixed_set: dict[str, tuple[str, str]]) -> None:
    out = Compressor(BOUND).compress("read_file", fixed_set["json"][1])
    shown = json.loads(body(out.text))
    assert list(shown) == ["data", "meta", "links"]
    assert shown["meta"]["total"] == JSON_ITEMS  # small values come through whole
    assert f"({JSON_ITEMS} in all)" in shown["data"][-1]
    assert "price float" in shown["data"][-1]  # the fields of the items dropped, with ranges
    assert f"data (array of {JSON_ITEMS})" in out.text.splitlines()[0]


def test_log_keeps_counts_levels_and_errors(fixed_set: dict[str, tuple[str, str]]) -> None:
    text = fixed_set["log"][1]
    out = Compressor(BOUND).compress("read_file", text)
    errors = [ln for ln in text.splitlines() if " ERROR " in ln]
    note = out.text.splitlines()[0]
    assert "Log of 5,000 lines" in note and f"ERROR {len(errors)}" in note
    # The repeated shape is collapsed with its count; the last error is shown verbatim.
    routine = sum(1 for ln in text.splitlines() if " INFO " in ln)
    assert re.search(rf"^{routine}x L1-", body(out.text), re.MULTILINE)
    assert errors[-1] in out.text and LOG_ERRORS_MESSAGE in out.text
    assert text.splitlines()[-1] in out.text


def test_source_says_exactly_what_was_cut(fixed_set: dict[str, tuple[str, str]]) -> None:
    text = fixed_set["source"][1]
    lines = text.splitlines()
    out = Compressor(BOUND).compress("read_file", text)
    m = re.search(r"\[… lines ([\d,]+)-([\d,]+) cut: ([\d,]+) lines, ([\d,]+) characters", out.text)
    assert m is not None
    first, last, count, chars = (int(g.replace(",", "")) for g in m.groups())
    assert count == last - first + 1
    assert chars == sum(len(ln) + 1 for ln in lines[first - 1 : last])
    shown = body(out.text).splitlines()
    assert shown[: first - 1] == lines[: first - 1]  # head verbatim
    assert shown[-(3000 - last) :] == lines[last:]  # tail verbatim
    assert "the cut part defines" in out.text


def test_search_is_grouped_with_totals(fixed_set: dict[str, tuple[str, str]]) -> None:
    out = Compressor(BOUND).compress("search_files", fixed_set["search"][1])
    assert "2,000 matches in 120 files" in out.text
    assert "pkg0/module_0.py: 17 matches" in out.text
    m = re.search(r"… (\d+) more files with (\d+) matches", out.text)
    assert m is not None
    listed = re.findall(r"^\S+\.py: (\d+) matches", body(out.text), re.MULTILINE)
    assert len(listed) + int(m.group(1)) == 120
    assert sum(map(int, listed)) + int(m.group(2)) == 2000


def test_small_results_pass_untouched() -> None:
    out = Compressor(BOUND).compress("read_file", "hello\nworld")
    assert (out.text, out.method, out.result_id) == ("hello\nworld", "none", None)


# --- recall --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["json", "log", "source", "search"])
async def test_expand_result_returns_the_exact_slice(
    fixed_set: dict[str, tuple[str, str]], name: str
) -> None:
    tool, text = fixed_set[name]
    comp = Compressor(BOUND)
    result_id = comp.compress(tool, text).result_id
    assert result_id is not None
    expand = comp.expand_tool()
    lines = text.splitlines()
    for offset, limit in [(0, 5), (1234 % len(lines), 17), (len(lines) - 3, 50)]:
        out = await expand.run({"result_id": result_id, "offset": offset, "limit": limit})
        header, _, got = out.partition("\n")
        assert got == "\n".join(lines[offset : offset + limit])
        assert header.startswith(f"[{result_id} lines {offset}-")
        assert estimate_tokens(out) <= BOUND


async def test_expand_result_is_bounded_and_says_where_to_go_on(
    fixed_set: dict[str, tuple[str, str]],
) -> None:
    comp = Compressor(BOUND)
    text = fixed_set["log"][1]
    comp.compress("read_file", text)
    out = comp.expand("r1", 100, 5000)
    assert estimate_tokens(out) <= BOUND
    m = re.match(r"\[r1 lines 100-(\d+) of 5000 .*next offset=(\d+)\]", out)
    assert m is not None and int(m.group(2)) == int(m.group(1)) + 1
    assert out.partition("\n")[2] == "\n".join(text.splitlines()[100 : int(m.group(2))])


def test_expand_result_errors_name_the_problem() -> None:
    comp = Compressor(BOUND)
    with pytest.raises(ToolError, match="no result 'r9'; results kept in this session: none"):
        comp.expand("r9")
    comp.compress("read_file", "x\n" * 3000)
    with pytest.raises(ToolError, match="offset 5000 is past the end: r1 has 3000 lines"):
        comp.expand("r1", 5000)


def test_one_line_json_is_kept_pretty_printed_for_paging() -> None:
    doc = {"items": [{"id": i, "name": f"n{i}"} for i in range(2000)]}
    comp = Compressor(BOUND)
    out = comp.compress("fetch_url", json.dumps(doc))
    assert out.method == "json"
    page = comp.expand("r1", 0, 6)
    assert "pretty-printed" in page
    assert page.partition("\n")[2] == "\n".join(json.dumps(doc, indent=1).splitlines()[:6])


@pytest.mark.parametrize("bound", [200, 333, 1000, 4000])
def test_every_method_stays_within_any_bound(
    fixed_set: dict[str, tuple[str, str]], bound: int
) -> None:
    for tool, text in fixed_set.values():
        out = Compressor(bound).compress(tool, text)
        assert out.compressed_tokens <= bound


def test_a_single_huge_line_is_cut_and_said_so(tmp_path: Path) -> None:
    text = "word " * 40_000
    comp = Compressor(BOUND)
    out = comp.compress("read_file", text)
    assert out.compressed_tokens <= BOUND and out.method == "text"
    page = comp.expand("r1", 0, 1)
    assert "line 0 of 1 is 200,000 characters" in page and estimate_tokens(page) <= BOUND


def test_a_log_of_one_shape_says_so_in_the_singular() -> None:
    lines = "".join(f"2026-01-01T00:00:{i % 60:02d} INFO request {i} served\n" for i in range(3000))
    note = Compressor(BOUND).compress("read_file", lines).text.splitlines()[0]
    assert "in 1 shape" in note and "1 shapes" not in note
