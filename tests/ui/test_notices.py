"""What the chat says of context edits, in words that count right."""

from __future__ import annotations

from tuiagent.runs.records import ContextEdit
from tuiagent.ui.widgets.chat import cleared_notice


def _cleared(ids: list[str]) -> ContextEdit:
    return ContextEdit(
        run_id="r",
        agent="main",
        action="clear_tool_results",
        turn=3,
        results=len(ids),
        result_ids=ids,
        tokens_before=1773,
        tokens_after=1743,
    )


def test_one_cleared_result_is_named_in_the_singular() -> None:
    text = cleared_notice(_cleared(["r1"]))
    assert text.startswith("cleared 1 old tool result from the context (1,773 -> 1,743")
    assert text.endswith("; r1 stays for expand_result")


def test_several_are_a_range() -> None:
    text = cleared_notice(_cleared(["r1", "r2", "r3"]))
    assert "cleared 3 old tool results" in text and text.endswith("r1..r3 stay for expand_result")
