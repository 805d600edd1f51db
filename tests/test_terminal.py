"""The terminal filter (tuiagent/terminal.py): no control character passes, text is kept."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tuiagent.terminal import printable

# Every character a terminal may act on: C0 but \t and \n, DEL, C1, the bidi controls, and
# the lone surrogates that a non-UTF-8 byte becomes under surrogateescape.
CONTROLS = [
    *(chr(c) for c in range(0x20) if chr(c) not in "\t\n"),
    *(chr(c) for c in range(0x7F, 0xA0)),
    *"\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
]
HOSTILE = [
    "\x1b]52;c;cHduZWQ=\x07",  # OSC 52: set the clipboard
    "\x1b[2J",  # wipe the screen
    "\x1b]8;;http://x\x07link\x1b]8;;\x07",  # a hyperlink
    "\x1b]0;TITLE\x07",  # the window title
    "\x9b2J",  # the 8-bit CSI
    "\x9d0;TITLE\x9c",  # the 8-bit OSC ... ST
    "admin\u202e\u2066 // not a comment\u2069\u2066",  # Trojan Source
]


def raw_controls(text: str) -> list[str]:
    return [c for c in text if c in CONTROLS or 0xD800 <= ord(c) <= 0xDFFF]


def test_each_control_is_shown_not_emitted() -> None:
    for char in CONTROLS:
        shown = printable(f"a{char}b")
        assert not raw_controls(shown), repr(char)
        assert shown.startswith("a") and shown.endswith("b") and len(shown) > 2
    assert printable("\x1b]52;c;cHduZWQ=\x07") == "␛]52;c;cHduZWQ=␇"
    assert printable("\x9b2J") == "\\x9b2J"
    assert printable("x\u202ey") == "x\\u202ey"
    assert printable("\x7f") == "␡"


def test_escape_sequences_show_as_text() -> None:
    for text in HOSTILE:
        assert not raw_controls(printable(text))


def test_newlines_tabs_and_ordinary_text_are_kept() -> None:
    text = "line 1\n\tindented é 漢字 🙂 ─ │ ␛ \\x1b\nend"
    assert printable(text) is text
    assert printable("a\r\nb\x1b") == "a\nb␛"  # a CRLF line end is a line end
    assert printable("over\rwrite") == "over␍write"  # a lone CR would overwrite the line


def test_a_byte_that_was_not_utf8_shows_as_its_value() -> None:
    name = b"caf\xe9\x1b.txt".decode("utf-8", errors="surrogateescape")
    shown = printable(name)
    assert shown == "caf\\xe9␛.txt"
    shown.encode("utf-8")  # a terminal writer can encode it


@given(st.text())
def test_any_text_comes_out_without_controls(text: str) -> None:
    shown = printable(text)
    assert not raw_controls(shown)
    shown.encode("utf-8")
    if not raw_controls(text):
        assert shown == text
