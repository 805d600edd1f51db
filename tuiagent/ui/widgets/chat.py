"""The conversation and the input under it.

The chat keeps every message of the session and draws only what is on the screen: it is
one widget over a list of entries (ui/widgets/entries.py) that draw themselves as lines,
once per width. An answer streams as Markdown, cut into blocks as it settles (a long code
fence into pieces), so only the block still growing is drawn again. Tool calls are lines
that open to their exact output (click one, or shift+Tab to the chat, up/down to one,
Enter). PageUp/PageDown scroll it from anywhere, Home/End too while it has the focus. Each
part shows the agent's events of its kinds (its `when_*` methods: ui/agent_events.py).
"""

from __future__ import annotations

import itertools
import json
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import TextArea

from tuiagent.llm.markers import SUMMARY_MARKER
from tuiagent.ui.commands import key_hint
from tuiagent.ui.widgets.context import meter_text
from tuiagent.ui.widgets.entries import (
    AnswerBlock,
    ChatAnswer,
    ChatEntry,
    ChatNotice,
    Look,
    Said,
    ToolBlock,
)

if TYPE_CHECKING:
    from tuiagent.agent.events import (
        AnswerDelta,
        AttemptFailed,
        ContextEdited,
        Halted,
        Notice,
        ToolCallStarted,
        ToolFinished,
        TurnFinished,
        TurnStarted,
    )
    from tuiagent.runs.records import ContextEdit, Turn

# A user this close to the end of the chat is following it: new output scrolls into view.
FOLLOW_WITHIN_LINES = 3
# How long streamed text may wait to be shown: text appears 15 times a second, and each
# time costs a layout pass, which typed keys would otherwise queue behind.
FRAME_SECONDS = 1 / 15
# Text coming faster than a screen a frame is a blur whatever the rate: then it is shown 5
# times a second, so frames nobody can read do not slow the answer down (15 a second were
# a tenth of the time of a fast offline stream: bench_ui).
BLUR_FRAME_SECONDS = 1 / 5
_looks = itertools.count(1)


class ChatLog(ScrollView, can_focus=True):
    """The conversation, anchored to its end while it grows (unless the user scrolled up)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "chat--user",
        "chat--user-bar",
        "chat--info",
        "chat--warning",
        "chat--error",
        "chat--quoted",
        "chat--quoted-bar",
        "chat--subtotal",
        "chat--answer",
        "chat--tool",
        "chat--tool-error",
        "chat--tool-body",
        "chat--selected",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "select(-1)", "Previous tool call", show=False),
        Binding("down", "select(1)", "Next tool call", show=False),
        Binding("enter", "open_tool", "Open or close the tool call", show=False),
    ]

    def __init__(self, *, key: Callable[[str], str] = key_hint, id: str | None = None) -> None:
        super().__init__(id=id)
        self.key = key  # the key of a command as the user has it, for the hints
        self.entries: list[ChatEntry] = []
        self._tops: list[int] = [0]  # where each entry begins; the last: the height of all
        self._heights: list[int] = []  # lines of each (estimated till drawn at this width)
        self._width = 0
        self._look: Look | None = None
        self.following = True  # at the end: new output scrolls into view
        self._placing = False  # the chat itself moves the view (not the user)
        self.tool_views: dict[str, ToolBlock] = {}
        self.selected: ToolBlock | None = None  # the keyboard's tool call
        self.answer: ChatAnswer | None = None  # the answer streaming now
        self._pending: list[str] = []  # answer text not yet on screen
        self._flush_due = False
        self._frame = FRAME_SECONDS  # how long the next text waits to be shown
        self._failure: ChatNotice | None = None  # the notice of a call failing right now
        self._batch: list[ChatEntry] | None = None  # entries to place together (show_history)
        self._shifted = 0  # lines the chat is pushed down by (shorter than its view)

    # --- drawing: only what is in view -------------------------------------------------

    def look(self) -> Look:
        if self._look is None:
            styles = {
                name: self.get_component_rich_style(name, partial=name != "chat--user")
                for name in self.COMPONENT_CLASSES
            }
            console = self.app.console
            options = console.options.update(highlight=False)
            self._look = Look(console, options, styles, self.rich_style, next(_looks))
        return self._look

    def notify_style_update(self) -> None:
        super().notify_style_update()
        if self._look is not None:  # a theme changed: every entry is drawn again
            self._look = None
            self._placed(0)

    def on_resize(self) -> None:
        width = self.scrollable_content_region.width
        if width != self._width:  # every entry is drawn again, as it comes into view
            self._width = width
            self._placed(0)
        elif self.entries:  # taller or shorter: the end (or the top line) stays put
            self._measure_view(width, self._anchor())

    def _shift(self) -> int:
        """A chat shorter than its view sits at the bottom, by the input."""
        return max(self.scrollable_content_region.height - self._tops[-1], 0)

    def render_line(self, y: int) -> Strip:
        look, width = self.look(), self._width
        line = round(self.scroll_y) + y - self._shifted
        at = bisect_right(self._tops, line) - 1
        if 0 <= at < len(self.entries):
            lines = self.entries[at].lines(look, width)
            row = line - self._tops[at]
            if row < len(lines):
                return lines[row]
        return Strip.blank(width, look.base)

    def _placed(self, first: int) -> None:
        """Entries from `first` on changed (or the width, or the look): place them again.
        Those in view are drawn (their exact height); the rest keep an estimate till they
        come into view. The line at the top of the view stays where it is, unless the chat
        follows its end."""
        width = self._width
        anchor = self._anchor()
        heights = self._heights
        del heights[first:]
        if width <= 0:  # not laid out yet: estimates, till it is (on_resize)
            heights += [entry.estimate(80) for entry in self.entries[first:]]
            self._tops = [0, *itertools.accumulate(heights)]
            return
        look = self.look()
        for entry in self.entries[first:]:
            # Drawn again only if it is drawn as it is now (else as it comes into view).
            heights.append(
                len(entry.lines(look, width))
                if entry.drawn_as(look, width)
                else entry.estimate(width)
            )
        self._tops = [0, *itertools.accumulate(heights)]
        self._measure_view(width, anchor)

    def _anchor(self) -> tuple[int, int] | None:
        """The entry at the top of the view and how far into it (None: follow the end)."""
        if self.following or not self.entries:
            return None
        line = round(self.scroll_y)
        at = min(bisect_right(self._tops, line) - 1, len(self.entries) - 1)
        return at, line - self._tops[at]

    def _measure_view(self, width: int, anchor: tuple[int, int] | None) -> None:
        """Draw the entries in view, so their heights are exact, then set the scroll."""
        look, view = self.look(), max(self.scrollable_content_region.height, 1)
        for _ in range(4):  # each pass draws what the last one brought into view
            top = self._tops[anchor[0]] + anchor[1] if anchor else self._tops[-1] - view
            first = max(bisect_right(self._tops, max(top, 0)) - 1, 0)
            last = bisect_right(self._tops, top + view)
            changed = None
            for i in range(first, min(last, len(self.entries))):
                exact = len(self.entries[i].lines(look, width))
                if exact != self._heights[i]:
                    self._heights[i] = exact
                    changed = i if changed is None else changed
            if changed is None:
                break
            self._tops[changed + 1 :] = itertools.accumulate(
                self._heights[changed:], initial=self._tops[changed]
            )
            del self._tops[changed + 1]  # the initial value, already in place
        total = self._tops[-1]
        self._shifted = self._shift()
        self._placing = True
        try:
            size = Size(width, total)
            if size != self.virtual_size:
                # Not the reactive's setter: it lays the whole screen out again, for a
                # size only the chat and its scrollbar use (always shown: main.tcss).
                self.set_reactive(ChatLog.virtual_size, size)
                self._scroll_update(size)
            y = max(total - view, 0) if anchor is None else self._tops[anchor[0]] + anchor[1]
            if y != round(self.scroll_y):  # (a scroll under way goes on otherwise)
                # Forced: whatever the scrollbar's state since the last layout.
                self.scroll_to(y=y, animate=False, immediate=True, force=True)
        finally:
            self._placing = False
        self.refresh()

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if self._placing:
            return
        self.following = new >= self.max_scroll_y - FOLLOW_WITHIN_LINES
        if round(old) != round(new) and self.entries:
            # What came into view is drawn; what is above keeps its place.
            self._measure_view(self._width, self._anchor())

    # --- adding and changing entries -----------------------------------------------------

    def _add(self, *entries: ChatEntry, follow: bool = False, at: int | None = None) -> None:
        if follow:
            self.following = True
        if self._batch is not None:  # placed together when the batch ends
            self._batch += entries
            return
        at = len(self.entries) if at is None else at
        self.entries[at:at] = entries
        self._placed(at)

    def _changed(self, entry: ChatEntry) -> None:
        """An entry's lines changed: it and those after it are placed again."""
        entry.changed()
        at = self._index(entry)
        if at >= 0:  # (else cleared since)
            self._placed(at)

    def _index(self, entry: ChatEntry) -> int:
        """Where the entry is, searched from the end, where the chat changes (-1: gone)."""
        entries = self.entries
        for at in range(len(entries) - 1, -1, -1):
            if entries[at] is entry:
                return at
        return -1

    def follow(self) -> None:
        """To the end, at once, and stay there as the chat grows (End; Enter in the input)."""
        self.following = True
        self._placed(len(self.entries))

    def action_scroll_end(self) -> None:
        self.follow()

    def action_scroll_home(self) -> None:
        """Home: the top at once (an animation would draw the chat again at every step)."""
        self.scroll_to(y=0, animate=False)

    def region_of(self, entry: ChatEntry) -> Region:
        """Where an entry is on the screen (empty when it is out of view)."""
        at = self._index(entry)
        top = self._tops[at] - round(self.scroll_y) + self._shifted
        view = self.scrollable_content_region
        drawn = Region(view.x, view.y + top, view.width, self._heights[at])
        return drawn.intersection(view)

    @property
    def answers(self) -> list[ChatAnswer]:
        """The answers in the chat, in order (each is the blocks it holds)."""
        seen: dict[int, ChatAnswer] = {}
        for entry in self.entries:
            if isinstance(entry, AnswerBlock):
                seen.setdefault(id(entry.answer), entry.answer)
        return list(seen.values())

    def add_user(self, text: str) -> Said:
        """A message sent to the agent. The chat follows it only if it follows the end
        already: one queued while the user reads above is sent without pulling them down
        (Enter brings the chat to its end: `follow`)."""
        said = Said(text)
        self._add(said)
        return said

    def add_answer(self, text: str = "", *, follow: bool = False) -> ChatAnswer:
        """A whole answer (help, /system, a resumed one)."""
        answer = ChatAnswer()
        self._add(*answer.append(text), follow=follow)
        return answer

    def add_tool(self, tool_use_id: str, name: str, arguments: dict[str, Any]) -> ToolBlock:
        view = ToolBlock(name, arguments)
        self.tool_views[tool_use_id] = view
        self._add(view)
        return view

    def add_notice(self, text: str, level: str = "info") -> ChatNotice:
        notice = ChatNotice(text, level)
        self._add(notice)
        return notice

    def add_subtotal(self, text: str) -> ChatNotice:
        """What a message cost, under its answer."""
        return self.add_notice(text, "subtotal")

    def show_history(self, history: list[dict[str, Any]]) -> None:
        """A resumed run's conversation, as it was: placed at once, so only what is in view
        is drawn however long it was."""
        self._batch = []
        try:
            self._history(history)
        finally:
            batch, self._batch = self._batch, None
            self._add(*batch)

    def _history(self, history: list[dict[str, Any]]) -> None:
        for entry in history:
            content = entry.get("content")
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
            for block in blocks or []:
                kind = block.get("type")
                if kind == "text" and block.get("text", "").startswith(SUMMARY_MARKER):
                    self.add_notice(f"(compacted) {block['text'].partition(chr(10))[2]}")
                elif kind == "text" and entry.get("role") == "user":
                    self.add_user(block.get("text", ""))
                elif kind == "text":
                    self.add_answer(block.get("text", ""))
                elif kind == "tool_use":
                    args = block.get("input")
                    self.add_tool(
                        block.get("id", ""),
                        block.get("name", "?"),
                        args if isinstance(args, dict) else {},
                    )
                elif kind == "tool_result" and (
                    view := self.tool_views.get(block.get("tool_use_id", ""))
                ):
                    # It ran in the earlier run: done, with what the model saw.
                    output = block.get("content")
                    text = output if isinstance(output, str) else json.dumps(output)
                    self.tool_finished(view, not block.get("is_error"), text, None)

    def tool_finished(
        self, view: ToolBlock, ok: bool, output: str, sizes: tuple[int, int] | None
    ) -> None:
        view.finished(ok, output, sizes)
        self._changed(view)

    def clear_chat(self) -> None:
        self.answer = None
        self._pending.clear()
        self._failure = None
        self.entries.clear()
        self.tool_views.clear()
        self.selected = None
        self.following = True
        self._placed(0)

    # --- tool calls: click one, or up/down to one and Enter --------------------------------

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        line = round(self.scroll_y) + offset.y - self._shifted
        at = bisect_right(self._tops, line) - 1
        if 0 <= at < len(self.entries) and line == self._tops[at]:
            entry = self.entries[at]
            if isinstance(entry, ToolBlock):
                self._select(entry)
                self.toggle_tool(entry)

    def on_focus(self) -> None:
        if self.selected is None:
            self.action_select(-1)

    def on_blur(self) -> None:
        self._select(None)

    def _tools_in_order(self) -> list[ToolBlock]:
        return [e for e in self.entries if isinstance(e, ToolBlock)]

    def action_select(self, step: int) -> None:
        """The previous (-1) or next (1) tool call; with none, the chat scrolls a line."""
        tools = self._tools_in_order()
        if not tools:
            self.scroll_relative(y=step, animate=False)
            return
        at = tools.index(self.selected) + step if self.selected in tools else len(tools) - 1
        self._select(tools[max(0, min(at, len(tools) - 1))])

    def _select(self, tool: ToolBlock | None) -> None:
        previous, self.selected = self.selected, tool
        focused = self.screen.focused is self
        for entry in (previous, tool):
            if entry is not None:
                entry.select(entry is tool and focused)
                self._changed(entry)
        if tool is not None:
            self._show(tool)

    def _show(self, entry: ChatEntry) -> None:
        """Scroll as little as brings the whole entry into view (its top, if it is taller);
        the user reads it, so the chat stays there as it grows."""
        at = self._index(entry)
        top, bottom = self._tops[at], self._tops[at + 1]
        view = self.scrollable_content_region.height
        y = round(self.scroll_y)
        if bottom > y + view:
            y = min(top, bottom - view)
        y = min(y, top)
        if y == round(self.scroll_y):
            return
        self.following = False
        self._placing = True
        try:
            self.scroll_to(y=y, animate=False, immediate=True, force=True)
        finally:
            self._placing = False
        self._measure_view(self._width, self._anchor())

    def action_open_tool(self) -> None:
        if self.selected is not None:
            self.toggle_tool(self.selected)

    def toggle_tool(self, tool: ToolBlock) -> None:
        """Open a tool call's block to its exact output, or close it."""
        tool.toggle()
        self.following = False  # the user reads it: it stays put as the chat grows
        self._changed(tool)
        self._show(tool)

    # --- the answer as it streams ------------------------------------------------

    def feed(self, text: str) -> None:
        """Take streamed answer text without waiting for the screen. What arrives within a
        frame is added at once: the chat draws the growing block once a frame, however fast
        the answer comes, and keys stay quick."""
        self._pending.append(text)
        if not self._flush_due:
            self._flush_due = True
            self.set_timer(self._frame, self.flush_answer)

    def flush_answer(self) -> None:
        """Put the gathered answer text on screen."""
        self._flush_due = False
        text = "".join(self._pending)
        self._pending.clear()
        if not text:
            return
        view = self.scrollable_content_region
        self._frame = BLUR_FRAME_SECONDS if len(text) > view.area else FRAME_SECONDS
        if self.answer is None:
            self.answer = ChatAnswer()
        answer = self.answer
        last = answer.blocks[-1] if answer.blocks else None
        new = answer.append(text)
        if last is None:
            self._add(*new)
            return
        at = self._index(last) + 1  # after its last block
        if new:
            self.entries[at:at] = new
        last.changed()
        self._placed(at - 1)

    def close_answer(self) -> None:
        self.flush_answer()
        self.answer = None
        self._frame = FRAME_SECONDS  # the next answer's first words show at once

    def discard_answer(self) -> None:
        """Drop the answer streaming now (a failed attempt's partial text: its retry
        streams the whole answer again)."""
        self._pending.clear()
        answer, self.answer = self.answer, None
        if answer is not None and answer.blocks:
            gone = set(map(id, answer.blocks))
            first = next(i for i, e in enumerate(self.entries) if id(e) in gone)
            self.entries = [e for e in self.entries if id(e) not in gone]
            self._placed(first)

    def failure_notice(self, text: str, level: str) -> None:
        """The one notice line of a failing call: made once, then updated in place."""
        if self._failure is None or self._failure not in self.entries:
            self._failure = self.add_notice(text, level)
        else:
            self._failure.update(text, level)
            self._changed(self._failure)

    # --- the agent's events (ui/agent_events.py) ------------------------------------

    def when_answer_delta(self, event: AnswerDelta) -> None:
        self.feed(event.text)  # shown within a frame; never awaited per token

    def when_turn_started(self, event: TurnStarted) -> None:
        if event.attempt > 1:
            self.discard_answer()  # the failed attempt's partial text gives way
        self.close_answer()

    def when_tool_call_started(self, event: ToolCallStarted) -> None:
        self.close_answer()
        view = self.tool_views.get(event.tool_use_id)
        if view is None:
            self.add_tool(event.tool_use_id, event.name, event.arguments)
        elif event.arguments:
            view.set_arguments(event.arguments)
            self._changed(view)

    def when_tool_finished(self, event: ToolFinished) -> None:
        r = event.record
        view = self.tool_views.get(r.tool_use_id) or self.add_tool(r.tool_use_id, r.name, r.input)
        self.tool_finished(view, r.ok, event.output, (r.original_tokens, r.result_tokens))

    def when_turn_finished(self, event: TurnFinished) -> None:
        self.close_answer()
        self._failure = None  # a retry went through: the next failure is a new one

    def when_attempt_failed(self, event: AttemptFailed) -> None:
        # A failed call is one notice line, updated in place while it is retried (not a
        # line and a toast per attempt).
        r = event.record
        self.failure_notice(
            f"{r.error}: retry {r.retries_used + 1} in {r.retry_in_s:.1f}s"
            if r.retry_in_s is not None
            else r.error,
            "warning",
        )

    def when_halted(self, event: Halted) -> None:
        self.close_answer()
        text = f"halted: {event.detail}"
        if event.withdrawn:
            text += "; nothing was sent, your message is back in the input"
        if event.by_cap:
            text += f". Raise the cap ({self.key('cap_up')} or /budget) to go on."
        elif event.reason == "max_turns":
            text += f"; {self.key('go_on')} goes on with as many calls again"
        self.failure_notice(text, "error")
        self._failure = None

    def when_notice(self, event: Notice) -> None:
        if self._failure is not None and event.level == "warning":
            return  # the retry notice: the failure's line already says it
        if event.level == "error":
            self.failure_notice(event.text, "error")
            self._failure = None
        else:
            self.add_notice(event.text, event.level)

    def when_context_edited(self, event: ContextEdited) -> None:
        if event.record.action == "clear_tool_results" and event.record.result_ids:
            self.add_notice(cleared_notice(event.record))


def cleared_notice(record: ContextEdit) -> str:
    """What the chat says when old tool results were cleared from the context."""
    ids, n = record.result_ids or [], record.results
    kept = ids[0] if len(ids) == 1 else f"{ids[0]}..{ids[-1]}"
    return (
        f"cleared {n} old tool result{'s' * (n != 1)} from the context "
        f"({record.tokens_before:,} -> {record.tokens_after:,} tokens); "
        f"{kept} {'stays' if len(ids) == 1 else 'stay'} for expand_result"
    )


class ChatInput(TextArea, inherit_bindings=False):
    """Enter sends; shift+enter or ctrl+j starts a new line; up/down recall earlier messages.
    Its border counts the messages queued, else shows the context meter. The TextArea's
    keys but F6 (select line): F6 is the app's (go on at max_turns), and the Keys panel
    listed both."""

    BINDINGS: ClassVar[list[BindingType]] = [
        b for b in TextArea.BINDINGS if not (isinstance(b, Binding) and b.key == "f6")
    ]

    @dataclass
    class Submitted(Message):
        text: str

    def __init__(self, *, key: Callable[[str], str] = key_hint, id: str | None = None) -> None:
        super().__init__(
            id=id,
            soft_wrap=True,
            show_line_numbers=False,
            compact=True,
            placeholder="Ask about the files here, or /help  (Enter sends, shift+Enter: new line)",
        )
        self.key = key  # the key of a command as the user has it, for the hints
        self.sent: list[str] = []
        self._recall: int | None = None  # index into history while recalling
        self._draft = ""
        self.queued = 0  # messages waiting for the agent
        self._meter = ""  # the context meter, on the border when nothing is queued
        self._context_record: Turn | None = None  # the last agent turn's

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            # Taken out at once: keys typed after Enter may be handled before the app
            # takes the message, and are the start of the next one.
            text = self.text.strip()
            if text:
                self.remember(text)
                self.clear()
                self.post_message(self.Submitted(text))
            return
        if event.key in ("shift+enter", "ctrl+j"):
            event.stop()
            event.prevent_default()
            self.insert("\n")
            return
        await super()._on_key(event)

    def give_back(self, text: str) -> None:
        """A message that was not sent: back in the input, before anything typed since."""
        typed = self.text
        self.show(f"{text}\n{typed}" if typed.strip() else text)

    def remember(self, text: str) -> None:
        if not self.sent or self.sent[-1] != text:
            self.sent.append(text)
        self._recall = None

    def action_cursor_up(self, select: bool = False) -> None:
        if self.cursor_location[0] == 0 and self.sent and not select:
            if self._recall is None:
                self._draft = self.text
                self._recall = len(self.sent)
            if self._recall > 0:
                self._recall -= 1
                self.show(self.sent[self._recall])
            return
        super().action_cursor_up(select)

    def action_cursor_down(self, select: bool = False) -> None:
        last_row = self.document.line_count - 1
        if self.cursor_location[0] == last_row and self._recall is not None and not select:
            self._recall += 1
            if self._recall >= len(self.sent):
                self._recall = None
                self.show(self._draft)
            else:
                self.show(self.sent[self._recall])
            return
        super().action_cursor_down(select)

    def show(self, text: str) -> None:
        """The input holds `text`, the cursor at its end (to type on)."""
        self.load_text(text)
        self.move_cursor(self.document.end)

    # --- the border: the messages queued, else the context meter --------------------

    def show_queue(self, n: int) -> None:
        """Waiting messages are counted under the input (a chat line would land in the
        middle of the answer streaming now)."""
        self.queued = n
        self.border_subtitle = (
            f"{n} queued: sent when the agent is free ({self.key('interrupt')} drops)"
            if n
            else self._meter
        )

    def show_context(self, record: Turn, tokens: int | None = None) -> None:
        """The context meter: how full the window is, and what reading the history cost on
        the last call (`tokens`: the context after an edit, with no call to price it)."""
        parts = record.cost_breakdown_usd
        input_cost = parts.input + parts.cache_write + parts.cache_read
        self._context_record = record
        shown = record.context_tokens if tokens is None else tokens
        self._meter = meter_text(
            shown, record.context_window, input_cost if tokens is None else None
        )
        self.show_queue(self.queued)

    # --- the agent's events (ui/agent_events.py) ------------------------------------

    def when_turn_finished(self, event: TurnFinished) -> None:
        if event.record.purpose == "agent":
            self.show_context(event.record)

    def when_context_edited(self, event: ContextEdited) -> None:
        """Old tool results cleared, a compaction or /clear: the meter follows."""
        if self._context_record is not None:
            self.show_context(self._context_record, event.record.tokens_after)

    def when_halted(self, event: Halted) -> None:
        """Nothing of the message was sent: it comes back here, unless the user typed on."""
        if event.withdrawn and not self.text.strip():
            self.show(event.withdrawn)
