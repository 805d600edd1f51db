"""An answer's Markdown as it streams (ui/widgets/entries.py): cut into blocks at paragraph
breaks, and a long code fence into pieces, each drawn as the whole would be."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.segment import Segment
from rich.style import Style

from tuiagent.terminal import is_printable
from tuiagent.ui.widgets import entries
from tuiagent.ui.widgets.entries import _GOES_ON, ChatAnswer, Fence, Look, _breaks

WIDTH = 60


def look() -> Look:
    console = Console(width=120, color_system="truecolor", force_terminal=True)
    styles = {"chat--answer": Style(color="white")}
    return Look(console, console.options.update(highlight=False), styles, Style(), 1)


def drawn(answer: ChatAnswer) -> list[str]:
    """The answer's lines as the chat shows them: each block's, in turn, every run of cells
    with its style."""
    shown = look()
    return [
        "".join(f"{text}{style}" for text, style, _ in Segment.simplify(line))
        for block in answer.blocks
        for line in block.lines(shown, WIDTH)
    ]


def streamed(text: str, sizes: list[int]) -> ChatAnswer:
    """The answer fed in pieces of these sizes. After each, the block still growing (the
    one drawn again at the next) holds no more than a piece of a fence."""
    answer, at = ChatAnswer(), 0
    for size in [*sizes, len(text)]:
        answer.append(text[at : at + size])
        at += size
        assert answer.blocks[-1].text.count("\n") <= entries.PIECE_LINES + 3
    return answer


CODE = [
    "def total(calls):",
    '    """What the calls cost.',
    "",
    '    Every one of them."""',
    "    return sum(c.cost for c in calls)  # " + "a comment that wraps " * 4,
    "",
    "\tindented = {'a': 1}",
    "x = 'a string'",
]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(CODE), max_size=90),
    st.lists(st.integers(1, 400), max_size=30),
    st.sampled_from(["```python", "~~~", "````text"]),
    st.sampled_from(["\n\n", "\n"]),  # a fence may interrupt a paragraph
)
def test_a_fence_streamed_in_pieces_is_drawn_as_the_whole_fence(
    lines: list[str], sizes: list[int], opening: str, gap: str
) -> None:
    closing = opening[: len(opening) - len(opening.lstrip("`~"))]  # the marker alone
    text = f"Here it is:{gap}{opening}\n" + "".join(f"{line}\n" for line in lines)
    text += f"{closing}\n\nThat is all.\n\n- one\n- two"
    answer = streamed(text, sizes)
    assert answer.text == text
    whole = ChatAnswer()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(entries, "PIECE_LINES", 10**9)
        whole.append(text)
        assert len(whole.blocks) == 3 and drawn(answer) == drawn(whole)


def test_a_fence_still_streaming_is_drawn_as_far_as_it_came() -> None:
    text = "```python\n" + "".join(f"n{i} = {i}\n" for i in range(50))
    answer = streamed(text, [7] * 60)
    assert len(answer.blocks) == 5  # 10 lines each
    shown = [line.text for block in answer.blocks for line in block.lines(look(), WIDTH)]
    assert [line.strip() for line in shown[1:51]] == [f"n{i} = {i}" for i in range(50)]
    whole = ChatAnswer()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(entries, "PIECE_LINES", 10**9)
        whole.append(text)
        assert drawn(answer) == drawn(whole)


def test_a_fence_piece_shows_escape_sequences_as_text() -> None:
    """A piece is drawn by Rich's Syntax, not its Markdown: the control bytes in it still
    reach the screen as stand-ins (ui/terminal.py), never as escape sequences."""
    evil = "x = '\x1b]52;c;aGk=\x07 \x1b]0;pwned\x07 \x9b2J'\n"
    text = "```python\n" + "y = 1\n" * 15 + evil * 3 + "z = 2\n" * 15
    answer = streamed(text, [9] * 80)
    assert len(answer.blocks) >= 3
    shown = "".join(line.text for b in answer.blocks for line in b.lines(look(), WIDTH))
    assert shown.count("␛]52;c;aGk=␇") == 3
    assert is_printable(shown)


def test_a_fence_closes_on_its_own_marker_only() -> None:
    fence = Fence("````", "python", [])
    closing = ["````", "  ````  ", "`````", "   ````"]
    not_closing = ["```", "    ````", "````python", "~~~~", "`` ``", "x ````"]
    assert all(fence.closes(line + "\n") for line in closing)
    assert not any(fence.closes(line + "\n") for line in not_closing)


def test_an_answer_is_cut_where_the_plain_definition_cuts_it() -> None:
    """The one-pass scan of an answer for block breaks against the definition, counted
    afresh at each break: outside a code fence (`fenced`: the text begins inside one), a
    paragraph break with text after it that is not a list item, an indent, or the start of
    either; or a whole line that opens a fence, after text of the block."""

    def plain(text: str, start: int, fenced: str) -> list[int]:
        cuts: list[int] = []
        for found in re.finditer(r"\n\n|\n(?=```|~~~)", text[start:]):
            at = start + found.start()
            before = fenced + text[:at]
            inside = before.count("```") % 2 or before.count("~~~") % 2
            if found.group() == "\n":
                line = at + 1
                if inside or not text[(cuts[-1] if cuts else 0) : line].strip():
                    continue
                if "\n" not in text[line:]:
                    break  # the opening line is not whole yet
                if re.match(r"(`{3,}|~{3,})[^`\n]*\n", text[line:]):
                    cuts.append(line)
                continue
            rest = text[at + 2 :].lstrip("\n")
            if not rest or re.fullmatch(r"[-*+]|[0-9]{1,9}[.)]?", rest):
                break  # the text after it has not come (a list item may be coming)
            if not inside and not _GOES_ON.match(rest):
                cuts.append(at + 2)
        return cuts

    pieces = ["\n", "\n\n", "`", "```", "~~~", "a", " ", "-", "- ", "1", "1. ", "\t", "py"]

    @settings(max_examples=800, deadline=None)
    @given(
        st.lists(st.sampled_from(pieces), max_size=30).map("".join),
        st.integers(0, 40),
        st.sampled_from(["", "```", "~~~"]),
    )
    def same(text: str, start: int, fenced: str) -> None:
        assert _breaks(text, start, fenced) == plain(text, start, fenced)

    same()
