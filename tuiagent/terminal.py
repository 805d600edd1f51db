"""The one terminal filter: no byte from a file, a model or a server drives the terminal.

Every text bound for a terminal (the CLI's stdout and stderr, the proxy's lines, `report`'s
table and CSV, every string the app renders) passes through `printable`. Control characters
(C0 but newline and tab, DEL, C1) and the bidi overrides and isolates that reorder what is
shown ("Trojan Source") are replaced by a visible stand-in: `\\x1b` as `␛`, C1 as `\\x9b`,
a bidi control as `\\u202e`. An escape sequence therefore shows as text (`␛]52;c;...␇`) and
sets no clipboard, title or screen. A lone surrogate (a byte that was not UTF-8, kept by
`surrogateescape`) shows as `\\xNN` instead of failing the write.

What is stored (the run log, the transcript, `--json`) keeps the exact text, JSON-escaped;
what the model reads is not filtered here.
"""

from __future__ import annotations

import re

# C0 but \t and \n, DEL, C1; the bidi embeddings/overrides (U+202A-E) and isolates
# (U+2066-9); lone surrogates (never valid in text a terminal is sent).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _visible(char: str) -> str:
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)  # the Control Pictures block: ␀ ... ␟
    if code == 0x7F:
        return "\u2421"  # ␡
    if code <= 0x9F:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"  # the byte surrogateescape kept
    return f"\\u{code:04x}"


def stand_ins() -> dict[int, str]:
    """Every character printable replaces, with its stand-in (for str.translate: the app
    gives it to Rich's and Textual's own control-code tables, ui/terminal.py). Built when
    asked: `tuiagent statusline` prints a line through `printable` and never needs it."""
    codes = (*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A))
    table = {code: _visible(chr(code)) for code in codes if chr(code) not in "\t\n"}
    table.update((code, _visible(chr(code))) for code in range(0xD800, 0xE000))
    return table


def printable(text: str) -> str:
    """`text` safe to write to a terminal: every control character shown, none emitted."""
    if _UNSAFE.search(text) is None:
        return text  # the common case: nothing copied
    return _UNSAFE.sub(lambda m: _visible(m.group()), text.replace("\r\n", "\n"))


def is_printable(text: str) -> bool:
    """Whether `text` holds nothing that `printable` would replace."""
    return _UNSAFE.search(text) is None
