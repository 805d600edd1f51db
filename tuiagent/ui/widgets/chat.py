"""The conversation: user messages, answers streamed as Markdown, tool calls as collapsible
blocks, notices; and the multi-line input with its history. Each shows the agent's events
of its kinds (its `when_*` methods: ui/agent_events.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual import events
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Collapsible, Static, TextArea

from tuiagent.llm.markers import SUMMARY_MARKER
from tuiagent.ui.commands import key_hint
from tuiagent.ui.format import tokens
from tuiagent.ui.widgets.context import meter_text

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
    from tuiagent.ui.widgets.answer import AnswerView

# Widgets kept on screen. Textual's layout pass grows with what is mounted, so older
# messages leave the screen (they stay in the run log and the transcript).
MAX_MOUNTED = 60
# A user this close to the end of the chat is following it: new output scrolls into view.
FOLLOW_WITHIN_LINES = 3
# How long streamed text may wait to be shown: text appears 15 times a second, and each
# time costs a layout pass, which typed keys would otherwise queue behind.
FRAME_SECONDS = 1 / 15


class UserMessageView(Static):
    pass


class NoticeView(Static):
    pass


class ToolCallView(Collapsible):
    """A tool call: name and arguments; once it ran, original -> seen tokens and ok/error.
    Its body is exact text: file and command output is never read as markup."""

    def __init__(self, name: str, arguments: dict[str, Any]) -> None:
        self.tool_name = name
        self.arguments = arguments
        self.body = Static(_args_text(arguments), classes="tool-body", markup=False)
        super().__init__(
            self.body, title=escape(f"⚙ {name} {_args_preview(arguments)}"), collapsed=True
        )

    def set_arguments(self, arguments: dict[str, Any]) -> None:
        """The call's arguments, once streamed in full (it starts with none)."""
        self.arguments = arguments
        self.title = escape(f"⚙ {self.tool_name} {_args_preview(arguments)}")
        self.body.update(_args_text(arguments))

    def finished(self, ok: bool, output: str, sizes: tuple[int, int] | None) -> None:
        """The call ended: `ok`, what the model saw, and (original, seen) token counts when
        known."""
        self.set_class(not ok, "-error")
        mark = "ok" if ok else "error"
        size = f"{tokens(sizes[0])} -> {tokens(sizes[1])} tok  " if sizes is not None else ""
        self.title = escape(  # a title is markup: a file name must not be read as such
            f"{'✓' if ok else '✗'} {self.tool_name} {_args_preview(self.arguments)}  {size}{mark}"
        )
        lines = output.splitlines()
        shown = "\n".join(lines[:30]) + (
            f"\n… {len(lines) - 30} more lines (Enter on it in Tool results shows all)"
            if len(lines) > 30
            else ""
        )
        self.body.update(f"{_args_text(self.arguments)}\n\n{shown}")


def _args_preview(arguments: dict[str, Any], limit: int = 50) -> str:
    text = json.dumps(arguments, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _args_text(arguments: dict[str, Any]) -> str:
    return json.dumps(arguments, ensure_ascii=False, indent=1)


class ChatLog(VerticalScroll):
    """The conversation, anchored to its end while it grows."""

    can_focus = False

    def __init__(self, *, key: Callable[[str], str] = key_hint, id: str | None = None) -> None:
        super().__init__(id=id)
        self.key = key  # the key of a command as the user has it, for the hints
        self.hidden_count = 0
        self.tool_views: dict[str, ToolCallView] = {}
        self.answer: AnswerView | None = None  # the answer streaming now
        self._pending: list[str] = []  # answer text not yet on screen
        self._flush_due = False
        self._answer_lock = asyncio.Lock()
        self._failure: NoticeView | None = None  # the notice of a call failing right now

    def on_mount(self) -> None:
        self.anchor()

    @property
    def near_end(self) -> bool:
        """The user reads the end (or close to it), so new output should stay in view."""
        return self.scroll_y >= self.max_scroll_y - FOLLOW_WITHIN_LINES

    def follow(self) -> None:
        """Back to the end, and stay there as the conversation grows (re-anchors)."""
        self.scroll_end(animate=False)

    def _add(self, widget: Widget, *, follow: bool = False) -> Widget:
        following = follow or self.near_end
        self.mount(widget)
        self._trim()
        if following:
            self.call_after_refresh(self.follow)
        return widget

    def _trim(self) -> None:
        extra = len(self.children) - MAX_MOUNTED
        if extra > 0:
            old = list(self.children[:extra])
            self.hidden_count += extra
            for widget in old:
                if isinstance(widget, ToolCallView):
                    self.tool_views = {k: v for k, v in self.tool_views.items() if v is not widget}
            self.remove_children(old)
            self.notify_hidden()

    def notify_hidden(self) -> None:
        self.border_subtitle = (
            f"{self.hidden_count} earlier messages off screen (in the run log)"
            if self.hidden_count
            else ""
        )

    async def freeze(self, part: AnswerView, text: str) -> None:
        """A finished part of a long answer becomes plain widgets with no children, each of
        about SPLIT_AT_CHARS: the layout pass then costs one widget per piece, not one per
        Markdown block, and a frame renders only the pieces in view. The chat stays at its
        end, so the last pieces are in view: they are measured now, the rest when they come
        into view (till then their height is estimated)."""
        from tuiagent.ui.widgets.answer import estimate_height, frozen_pieces

        frozen = frozen_pieces(text)
        view = self.scrollable_content_region
        rows = view.height
        for piece in reversed(frozen):
            if rows <= 0:
                break
            piece.measured = True
            rows -= estimate_height(piece.text, view.width)
        await self.mount_all(frozen, before=part)
        await part.remove()

    def add_user(self, text: str) -> UserMessageView:
        """A message the user sent: they look for its answer, so the chat follows."""
        view = UserMessageView(text, markup=False)
        self._add(view, follow=True)
        return view

    def add_answer(
        self, text: str = "", *, continued: bool = False, follow: bool = False
    ) -> AnswerView:
        # Markdown (and markdown-it) load with the first answer, not before the first frame.
        from tuiagent.ui.widgets.answer import AnswerView

        view = AnswerView(text, continued=continued)
        self._add(view, follow=follow)
        return view

    async def open_answer(self, *, continued: bool = False) -> AnswerView:
        """A new answer to stream into, once mounted: Markdown resets its text on mount, so
        text appended before that would be lost."""
        from tuiagent.ui.widgets.answer import AnswerView

        following = self.near_end
        view = AnswerView(continued=continued)
        await self.mount(view)
        self._trim()
        if following:
            self.follow()
        return view

    def add_tool(self, tool_use_id: str, name: str, arguments: dict[str, Any]) -> ToolCallView:
        view = ToolCallView(name, arguments)
        self.tool_views[tool_use_id] = view
        self._add(view)
        return view

    def add_notice(self, text: str, level: str = "info") -> NoticeView:
        view = NoticeView(text, markup=False, classes=f"-{level}")
        self._add(view)
        return view

    def add_subtotal(self, text: str) -> NoticeView:
        """What a message cost, under its answer."""
        view = NoticeView(text, markup=False, classes="-subtotal")
        self._add(view)
        return view

    def show_history(self, history: list[dict[str, Any]]) -> None:
        """A resumed run's conversation, as it was."""
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
                    view.finished(not block.get("is_error"), text, None)

    def clear_chat(self) -> None:
        self.answer = None
        self._pending.clear()
        self.remove_children()
        self.tool_views.clear()
        self.hidden_count = 0
        self.notify_hidden()

    # --- the answer as it streams ------------------------------------------------

    def feed(self, text: str) -> None:
        """Take streamed answer text without waiting for the screen. What arrives within a
        frame goes to the Markdown stream as one append: the app never pays a parse and a
        layout pass per token, and keys stay quick however fast the answer comes."""
        self._pending.append(text)
        if not self._flush_due:
            self._flush_due = True
            self.set_timer(FRAME_SECONDS, self.flush_answer)

    async def flush_answer(self) -> None:
        """Put the gathered answer text on screen. Past SPLIT_AT_CHARS the live part ends at
        a paragraph break and becomes one plain widget; the rest goes on in a new part."""
        async with self._answer_lock:
            self._flush_due = False
            text = "".join(self._pending)
            self._pending.clear()
            if not text:
                return
            if self.answer is None:
                self.answer = await self.open_answer()
            cut = self.answer.cut(text)
            if cut is not None:
                part = self.answer
                await part.close()
                await self.freeze(part, part.text + text[:cut])
                self.answer = await self.open_answer(continued=True)
                text = text[cut:]
            if text:
                await self.answer.write(text)

    async def close_answer(self) -> None:
        await self.flush_answer()
        async with self._answer_lock:
            if self.answer is not None:
                await self.answer.close()
                self.answer = None

    async def discard_answer(self) -> None:
        """Drop the answer streaming now (a failed attempt's partial text: its retry
        streams the whole answer again)."""
        async with self._answer_lock:
            self._pending.clear()
            if self.answer is not None:
                await self.answer.close()
                await self.answer.remove()
                self.answer = None

    def failure_notice(self, text: str, level: str) -> None:
        """The one notice line of a failing call: made once, then updated in place."""
        if self._failure is None or not self._failure.is_attached:
            self._failure = self.add_notice(text, level)
        else:
            self._failure.update(text)
            self._failure.set_classes(f"-{level}")

    # --- the agent's events (ui/agent_events.py) ------------------------------------

    def when_answer_delta(self, event: AnswerDelta) -> None:
        self.feed(event.text)  # shown within a frame; never awaited per token

    async def when_turn_started(self, event: TurnStarted) -> None:
        if event.attempt > 1:
            await self.discard_answer()  # the failed attempt's partial text gives way
        await self.close_answer()

    async def when_tool_call_started(self, event: ToolCallStarted) -> None:
        await self.close_answer()
        view = self.tool_views.get(event.tool_use_id)
        if view is None:
            self.add_tool(event.tool_use_id, event.name, event.arguments)
        elif event.arguments:
            view.set_arguments(event.arguments)

    def when_tool_finished(self, event: ToolFinished) -> None:
        r = event.record
        view = self.tool_views.get(r.tool_use_id) or self.add_tool(r.tool_use_id, r.name, r.input)
        view.finished(r.ok, event.output, (r.original_tokens, r.result_tokens))

    async def when_turn_finished(self, event: TurnFinished) -> None:
        await self.close_answer()
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

    async def when_halted(self, event: Halted) -> None:
        await self.close_answer()
        text = f"halted: {event.detail}"
        if event.withdrawn:
            text += "; nothing was sent, your message is back in the input"
        if event.by_cap:
            text += f". Raise the cap ({self.key('cap_up')} or /budget) to go on."
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


class ChatInput(TextArea):
    """Enter sends; shift+enter or ctrl+j starts a new line; up/down recall earlier messages.
    Its border counts the messages queued, else shows the context meter."""

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
            text = self.text.strip()
            if text:
                self.post_message(self.Submitted(text))
            return
        if event.key in ("shift+enter", "ctrl+j"):
            event.stop()
            event.prevent_default()
            self.insert("\n")
            return
        await super()._on_key(event)

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
                self._show(self.sent[self._recall])
            return
        super().action_cursor_up(select)

    def action_cursor_down(self, select: bool = False) -> None:
        last_row = self.document.line_count - 1
        if self.cursor_location[0] == last_row and self._recall is not None and not select:
            self._recall += 1
            if self._recall >= len(self.sent):
                self._recall = None
                self._show(self._draft)
            else:
                self._show(self.sent[self._recall])
            return
        super().action_cursor_down(select)

    def _show(self, text: str) -> None:
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
            self.load_text(event.withdrawn)
            self.move_cursor(self.document.end)
