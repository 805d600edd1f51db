"""What the chat holds, one entry per thing said: a user message, an answer (Markdown,
streamed), a tool call (a block that opens), a notice. Each entry draws itself as lines
(`Strip`s) at a width, once per width and look; the chat (ui/widgets/chat.py) shows the
lines in view, so a chat of any length costs what is on the screen.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip

from tuiagent.ui.format import tokens

# Lines of a tool's output shown in its block (the viewer shows all of it).
TOOL_LINES = 30


@dataclass(frozen=True)
class Look:
    """The chat's styles, from its component classes (theme colours), and the console and
    options it renders with."""

    console: Console
    options: ConsoleOptions
    styles: dict[str, Style]
    base: Style  # the chat's own colours, under every line
    generation: int  # a new look (a theme change) draws every entry again

    def __getitem__(self, name: str) -> Style:
        return self.styles[name]


def render(look: Look, renderable: RenderableType, width: int, style: Style) -> list[Strip]:
    """A renderable as lines of exactly `width` cells."""
    options = look.options.update_width(max(width, 1))
    lines = look.console.render_lines(renderable, options, style=style, pad=True)
    return [Strip(line, max(width, 1)) for line in lines]


def _pad(strips: Iterable[Strip], left: int, right: int, style: Style) -> list[Strip]:
    """Each line with `left` and `right` cells of `style` around it."""
    before = [Segment(" " * left, style)] if left else []
    after = [Segment(" " * right, style)] if right else []
    return [Strip([*before, *strip, *after], strip.cell_length + left + right) for strip in strips]


def _blank(width: int, style: Style | None = None) -> Strip:
    return Strip.blank(width, style)


class ChatEntry:
    """One thing in the chat. `lines(look, width)` is what it shows (cached per width and
    look); `changed()` says its content changed."""

    def __init__(self) -> None:
        self._key: tuple[int, int] | None = None
        self._lines: list[Strip] = []

    def lines(self, look: Look, width: int) -> list[Strip]:
        """Its lines, each exactly `width` cells over the chat's colours."""
        key = (width, look.generation)
        if self._key != key:
            self._lines = [
                line.crop_extend(0, width, None).apply_style(look.base)
                for line in self.draw(look, max(width, 4))
            ]
            self._key = key
        return self._lines

    def changed(self) -> None:
        self._key = None

    @property
    def drawn(self) -> bool:
        return self._key is not None

    def drawn_as(self, look: Look, width: int) -> bool:
        """Its lines are at hand for this width and look (nothing to draw)."""
        return self._key == (width, look.generation)

    def draw(self, look: Look, width: int) -> list[Strip]:
        raise NotImplementedError

    def estimate(self, width: int) -> int:
        """Lines it takes at `width`, cheaply (before it is drawn at that width)."""
        return 1


class Said(ChatEntry):
    """A message the user sent: a bar in the primary colour, on its own background, a
    blank line above."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def draw(self, look: Look, width: int) -> list[Strip]:
        back = look["chat--user"]
        body = render(look, Text(self.text), width - 3, back)
        bar = Segment("█", look["chat--user-bar"])
        return [
            _blank(width),
            *(Strip([bar, Segment(" ", back), *s, Segment(" ", back)], width) for s in body),
        ]

    def estimate(self, width: int) -> int:
        return 1 + _wrapped_lines(self.text, width - 3)


class ChatNotice(ChatEntry):
    """A line from the app: info, warning, error, a quoted text, or what a message cost."""

    LEVELS: ClassVar[tuple[str, ...]] = ("info", "warning", "error", "quoted", "subtotal")

    def __init__(self, text: str, level: str = "info") -> None:
        super().__init__()
        self.text = text
        self.level = level if level in self.LEVELS else "info"

    def update(self, text: str, level: str | None = None) -> None:
        self.text = text
        if level is not None:
            self.level = level if level in self.LEVELS else "info"
        self.changed()

    def draw(self, look: Look, width: int) -> list[Strip]:
        style = look[f"chat--{self.level}"]
        if self.level == "quoted":  # exact text that wraps, under a bar, indented
            bar = Segment("▌", look["chat--quoted-bar"])
            body = render(look, Text(self.text), width - 6, style)
            return [
                Strip([Segment("  "), bar, Segment(" "), *s, Segment("  ")], width) for s in body
            ]
        text = Text(self.text, justify="right" if self.level == "subtotal" else "left")
        body = render(look, text, width - 2, style)
        return _pad(body, 1, 1, Style())

    def estimate(self, width: int) -> int:
        return _wrapped_lines(self.text, width - 2)


class ToolBlock(ChatEntry):
    """A tool call: its name and arguments on one line that opens (click, or Enter on it) to
    its arguments and what it returned; once it ran, original -> seen tokens and ok/error.
    Its text is exact: file and command output is never read as markup."""

    def __init__(self, name: str, arguments: dict[str, Any]) -> None:
        super().__init__()
        self.name = name
        self.arguments = arguments
        self.expanded = False
        self.selected = False  # the chat's keyboard cursor is on it
        self.ok: bool | None = None  # None: not finished
        self.output = ""
        self.sizes: tuple[int, int] | None = None

    @property
    def title(self) -> str:
        return self.headline()

    def headline(self, limit: int = 50) -> str:
        """Its line: the arguments cut to `limit` characters, then what it came to."""
        preview = _args_preview(self.arguments, limit)
        if self.ok is None:
            return f"⚙ {self.name} {preview}"
        size = f"{tokens(self.sizes[0])} -> {tokens(self.sizes[1])} tok  " if self.sizes else ""
        mark = "ok" if self.ok else "error"
        return f"{'✓' if self.ok else '✗'} {self.name} {preview}  {size}{mark}"

    @property
    def body(self) -> str:
        args = _args_text(self.arguments)
        if self.ok is None:
            return args
        lines = self.output.splitlines()
        shown = "\n".join(lines[:TOOL_LINES])
        if len(lines) > TOOL_LINES:
            shown += (
                f"\n… {len(lines) - TOOL_LINES} more lines (Enter on it in Tool results shows all)"
            )
        return f"{args}\n\n{shown}"

    def set_arguments(self, arguments: dict[str, Any]) -> None:
        """The call's arguments, once streamed in full (it starts with none)."""
        self.arguments = arguments
        self.changed()

    def finished(self, ok: bool, output: str, sizes: tuple[int, int] | None) -> None:
        """The call ended: `ok`, what the model saw, and (original, seen) token counts when
        known."""
        self.ok, self.output, self.sizes = ok, output, sizes
        self.changed()

    def toggle(self) -> None:
        self.expanded = not self.expanded
        self.changed()

    def select(self, selected: bool) -> None:
        if selected != self.selected:
            self.selected = selected
            self.changed()

    def draw(self, look: Look, width: int) -> list[Strip]:
        title_style = look["chat--tool-error" if self.ok is False else "chat--tool"]
        if self.selected:
            title_style = title_style + look["chat--selected"]
        arrow = "▼" if self.expanded else "▶"
        headline = self.headline()
        over = cell_len(headline) + 4 - width  # a narrow chat cuts the arguments, not "ok"
        if over > 0:
            shown = len(_args_preview(self.arguments))
            headline = self.headline(max(shown - over, 8))
        title = Text(f" {arrow} {headline} ", style=title_style, no_wrap=True, overflow="crop")
        lines = render(look, title, width, Style())[:1]  # a click on its line opens it
        if self.expanded:
            body = render(look, Text(self.body), width - 6, look["chat--tool-body"])
            lines += [_blank(width), *_pad(body, 5, 1, Style())]
        return lines

    def estimate(self, width: int) -> int:
        return 1 + (1 + _wrapped_lines(self.body, width - 6) if self.expanded else 0)


def _args_preview(arguments: dict[str, Any], limit: int = 50) -> str:
    text = json.dumps(arguments, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _args_text(arguments: dict[str, Any]) -> str:
    return json.dumps(arguments, ensure_ascii=False, indent=1)


# --- answers: Markdown, drawn a block at a time --------------------------------------

# A paragraph break is a place to end a block only if what follows does not go on the
# same Markdown element: a list item, an indented continuation.
_GOES_ON = re.compile(r"[ \t]|[-*+] |\d{1,9}[.)] ")
_MAY_GO_ON = re.compile(r"[-*+]|\d{1,9}[.)]?")  # all the text after a break, so far
# A code fence that opens a block streams in pieces of this many lines, so only its last
# piece is drawn again as it grows: drawn whole, a frame of a 300-line fence took 60 ms.
PIECE_LINES = 10
# A piece is highlighted after at most this many of the fence's lines before it: a string
# or comment begun further up is coloured as code in it (the cost stays that of a piece).
CONTEXT_LINES = 30
CODE_THEME = "monokai"  # Rich's Markdown's own
_OPENING = re.compile(r"(`{3,}|~{3,})([^`\n]*)\n")


# Where a block may end: a paragraph break, or a line that opens a code fence (a fence
# interrupts a paragraph, CommonMark).
_BREAK = re.compile(r"\n\n|\n(?=```|~~~)")


def _breaks(text: str, start: int = 0, fenced: str = "") -> list[int]:
    """Where `text` may be cut into Markdown blocks (from `start` on), outside a code fence
    (`fenced`: the text begins inside a fence of this marker): after a paragraph break that
    the text after it does not continue, and before a line that opens a fence. One pass:
    fences are counted between breaks (a fence never spans a line break)."""
    cuts: list[int] = []
    ticks, tildes = int(fenced.startswith("`")), int(fenced.startswith("~"))
    counted = 0
    for found in _BREAK.finditer(text, start):
        at = found.start()
        ticks += text.count("```", counted, at)
        tildes += text.count("~~~", counted, at)
        counted = at
        outside = ticks % 2 == 0 and tildes % 2 == 0
        if found.group() == "\n":  # a line that begins as a fence does
            line = at + 1
            if outside and text[cuts[-1] if cuts else 0 : line].strip():
                if "\n" not in text[line:]:
                    break  # the line has not all come: a fence, or inline code?
                if _OPENING.match(text, line):
                    cuts.append(line)
            continue
        after = at + 2
        while after < len(text) and text[after] == "\n":
            after += 1
        if after == len(text) or _MAY_GO_ON.fullmatch(text, after):
            break  # the text after the break has not come yet (or not enough to tell)
        if outside and not _GOES_ON.match(text, after):
            cuts.append(at + 2)
    return cuts


@dataclass(eq=False)
class Fence:
    """A code fence that opened a block of an answer, and the pieces it streamed in."""

    marker: str  # ``` or ~~~ (or longer): a line of at least these closes it
    lexer: str  # from its info string, as Rich's Markdown takes it
    pieces: list[AnswerBlock]

    def closes(self, line: str) -> bool:
        """A closing line, as CommonMark has it: up to 3 spaces, then at least the marker's
        run of its character, then nothing but spaces."""
        body = line.rstrip()
        indent = len(body) - len(body.lstrip(" "))
        body = body.lstrip(" ")
        return indent <= 3 and body.startswith(self.marker) and not body.strip(self.marker[0])

    def code(self, piece: AnswerBlock) -> tuple[str, str]:
        """A piece's code (its opening line left out) and what follows the closing line."""
        text = piece.text
        if piece is self.pieces[0]:
            text = text.partition("\n")[2]
        at = 0
        while at < len(text):
            end = text.find("\n", at)
            end = len(text) if end < 0 else end + 1
            if self.closes(text[at:end]):
                return text[:at], text[end:]
            at = end
        return text, ""

    def context(self, piece: AnswerBlock) -> str:
        """The fence's code before the piece, at most CONTEXT_LINES lines of it."""
        before: list[str] = []
        for earlier in reversed(self.pieces[: self.pieces.index(piece)]):
            before[:0] = self.code(earlier)[0].splitlines(keepends=True)
            if len(before) >= CONTEXT_LINES:
                break
        return "".join(before[-CONTEXT_LINES:])


def _piece_end(block: AnswerBlock) -> int | None:
    """Where a block that is an open code fence ends its piece, once it holds PIECE_LINES
    lines of code and more text: after the last of them that is not blank (blank lines at
    a fence's end are not drawn, and whether they are at its end is not known yet). None:
    not a fence, it closes before, or nothing but blank lines came."""
    fence, text = block.fence, block.text
    if fence is None:
        return None
    at = len(text.partition("\n")[0]) + 1 if block is fence.pieces[0] else 0
    filled = None
    for _ in range(PIECE_LINES):
        end = text.find("\n", at)
        if end < 0 or fence.closes(text[at:end]):
            return None
        if text[at:end].strip():
            filled = end + 1
        at = end + 1
    return filled if filled is not None and filled < len(text) else None


class AnswerBlock(ChatEntry):
    """A block of an answer's Markdown and the blank line under it: drawn once per width;
    the last block of an answer still streaming is drawn again as its text grows. A piece
    of a long code fence is drawn as its lines of the fence (`fence`)."""

    def __init__(self, text: str, answer: ChatAnswer, fence: Fence | None = None) -> None:
        super().__init__()
        self.text = text
        self.answer = answer
        self.fence = fence

    def set_text(self, text: str) -> None:
        self.text = text
        self.changed()
        if self.fence is None and (opening := _OPENING.match(text)):
            # A fence opens the block: if it grows long, it goes on in pieces.
            marker, info = opening.groups()
            self.fence = Fence(marker, info.strip().partition(" ")[0] or "text", [self])

    def draw(self, look: Look, width: int) -> list[Strip]:
        fence = self.fence
        if fence is None or len(fence.pieces) == 1:  # the block as Markdown, whole
            lines = _markdown(look, self.text, width) if self.text.strip() else []
            return [*lines, _blank(width)] if lines else lines
        # A piece: its lines of the fence, as Rich's Markdown draws a fence (the code after
        # its context, padded by a line above the first piece and below the last).
        code, after = fence.code(self)
        context = fence.context(self)
        last = self is fence.pieces[-1]
        from rich.syntax import Syntax  # with the first long fence: not before

        syntax = Syntax(
            (context + code).rstrip() if last else (context + code).removesuffix("\n"),
            fence.lexer,
            theme=CODE_THEME,
            word_wrap=True,
            padding=(int(self is fence.pieces[0]), 1, int(last), 1),
            line_range=(context.count("\n") + 1, None) if context else None,
        )
        lines = _pad(render(look, syntax, width - 2, look["chat--answer"]), 1, 1, Style())
        if after.strip():
            lines += [_blank(width), *_markdown(look, after, width)]
        return [*lines, _blank(width)] if last else lines

    def estimate(self, width: int) -> int:
        return estimate_height(self.text, width - 2) + 1 if self.text.strip() else 0


class ChatAnswer:
    """An answer: Markdown cut into blocks at paragraph breaks as it streams, and a long
    code fence into pieces. The chat holds its blocks as entries, so a long answer costs
    what is on the screen."""

    def __init__(self) -> None:
        self.blocks: list[AnswerBlock] = []  # the last one is the one that grows

    @property
    def text(self) -> str:
        return "".join(b.text for b in self.blocks)

    def append(self, fragment: str) -> list[AnswerBlock]:
        """Take more text; returns the blocks it begins (they go after the answer's last)."""
        new: list[AnswerBlock] = []
        live = self.blocks[-1] if self.blocks else self._begin(new)
        text = live.text + fragment
        # Only the new text can hold a new break, or complete one begun on the last line
        # (a paragraph break waiting for what follows, a fence's opening line).
        start = max(0, live.text.rfind("\n", 0, len(live.text) - 1) - 1)
        while True:
            fence = live.fence
            fenced = fence.marker if fence is not None and live is not fence.pieces[0] else ""
            done = 0
            for cut in _breaks(text, start, fenced):
                live.set_text(text[done:cut])
                live, done = self._begin(new), cut
            text = text[done:]
            live.set_text(text)
            end = _piece_end(live)
            if end is None:
                return new
            live.set_text(text[:end])
            text, start = text[end:], 0
            live = self._begin(new, live.fence)

    def _begin(self, new: list[AnswerBlock], fence: Fence | None = None) -> AnswerBlock:
        block = AnswerBlock("", self, fence)
        if fence is not None:
            fence.pieces.append(block)
        self.blocks.append(block)
        new.append(block)
        return block


_parsers: list[tuple[Any, Any]] = []  # (a Markdown to copy, the parser), made once


def _parsed(text: str) -> RenderableType:
    """Rich's Markdown of `text`. One parser for all: making one costs more than parsing a
    paragraph, and rich's Markdown makes one each time."""
    if not _parsers:
        # With the first answer: Markdown and markdown-it are not needed before.
        from markdown_it import MarkdownIt
        from rich.markdown import Markdown

        _parsers.append(
            (
                Markdown("", code_theme=CODE_THEME),
                MarkdownIt().enable("strikethrough").enable("table"),
            )
        )
    template, parser = _parsers[0]
    markdown = copy.copy(template)
    markdown.markup, markdown.parsed = text, parser.parse(text)
    return markdown  # type: ignore[no-any-return]


def _markdown(look: Look, text: str, width: int) -> list[Strip]:
    """Markdown as lines, padded one cell each side; no blank lines above or below."""
    lines = render(look, _parsed(text), width - 2, look["chat--answer"])
    while lines and _is_blank(lines[-1]):
        lines.pop()
    while lines and _is_blank(lines[0]):
        lines.pop(0)
    return _pad(lines, 1, 1, Style())


def _is_blank(strip: Strip) -> bool:
    """No text and no colour of its own (a code block's or a table's padding is not)."""
    return all(
        not text.strip() and (style is None or style.bgcolor is None) for text, style, _ in strip
    )


def estimate_height(text: str, width: int) -> int:
    """Lines the Markdown `text` takes at `width`, without parsing or rendering it: each line
    of source word-wrapped (list items indented by their bullet), blocks a blank line apart."""
    width = max(width, 1)
    lines = 0
    fenced = False
    for line in text.strip().splitlines():
        if line.startswith(("```", "~~~")):
            fenced = not fenced
            lines += 1
            continue
        if fenced or not line.strip():
            lines += 1
            continue
        indent = 3 if line.lstrip().startswith(("- ", "* ", "+ ")) else 0
        lines += _wrapped(line.lstrip("-*+# "), width - indent)
    return lines


def _wrapped_lines(text: str, width: int) -> int:
    return sum(_wrapped(line, width) for line in text.splitlines() or [""])


def _wrapped(line: str, width: int) -> int:
    width = max(width, 1)
    rows, used = 1, 0
    for word in line.split():
        size = len(word)
        if used and used + 1 + size > width:
            rows, used = rows + 1, size
        else:
            used += size + (1 if used else 0)
    return rows
