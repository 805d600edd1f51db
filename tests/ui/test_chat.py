"""The chat keeps every message and draws only what is in view (issues 27 and 28): scrolled
with PageUp/PageDown from anywhere, Home/End in it; a tool call opens from the keyboard or
a click."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual import events
from textual.keys import _character_to_key
from textual.pilot import Pilot

from tests.support.app import idle, ready, send, until
from tuiagent.ui.app import TuiagentApp
from tuiagent.ui.widgets.entries import Said, ToolBlock

MakeApp = Callable[..., TuiagentApp]


def screen_text(pilot: Pilot[Any]) -> str:
    return "\n".join(strip.text for strip in pilot.app.screen._compositor.render_strips())


def chat_text(pilot: Pilot[Any]) -> list[str]:
    """The chat's lines on screen, without its scrollbar."""
    chat = pilot.app.main.chat  # type: ignore[attr-defined]
    view = chat.scrollable_content_region
    strips = pilot.app.screen._compositor.render_strips()[view.y : view.bottom]
    return [strip.crop(view.x, view.right).text for strip in strips]


def said(app: TuiagentApp) -> list[str]:
    return [e.text for e in app.main.chat.entries if isinstance(e, Said)]


def fill(app: TuiagentApp, messages: int) -> None:
    for i in range(messages):
        app.main.chat.add_user(f"question number {i}")
        app.main.chat.add_answer(f"Answer number {i}.\n\n- one point\n- another point\n")


async def test_every_message_stays_and_only_what_is_in_view_is_drawn(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        chat = app.main.chat
        history: list[dict[str, Any]] = []
        for i in range(1000):  # a resumed session of 1,000 messages and answers
            history.append({"role": "user", "content": f"question number {i}"})
            history.append({"role": "assistant", "content": f"Answer number {i}."})
        chat.show_history(history)
        await pilot.pause()
        said = [e for e in chat.entries if isinstance(e, Said)]
        assert len(said) == 1000 and said[0].text == "question number 0"  # none dropped
        assert sum(e.drawn for e in chat.entries) < 40  # what the screen shows, not 2,000
        assert "Answer number 999." in screen_text(pilot)
        assert "earlier messages" not in screen_text(pilot)  # nothing went off screen
        chat.scroll_home(animate=False)
        await until(pilot, lambda: "question number 0" in screen_text(pilot), "the top")


def thumb(bar: Any) -> bool:
    """The scrollbar draws a thumb (reversed cells), not only its track."""
    lines = bar.render_lines(bar.region.reset_offset)
    return any(seg.style is not None and seg.style.reverse for line in lines for seg in line)


async def test_the_chat_outgrowing_its_view_lays_nothing_out_again(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chat's scrollbar is there from the start: when the chat first outgrows its view
    (a first long answer) the scrollbar's thumb shows, and the screen is not laid out again
    for it (it was, once a session: 10 ms in bench_ui's stream)."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.pause()
        chat = app.main.chat
        bar = chat.vertical_scrollbar
        assert chat.show_vertical_scrollbar and chat.max_scroll_y == 0 and not thumb(bar)
        layouts: list[bool] = []
        relayout = type(app.screen)._refresh_layout

        def counting(screen: Any, *args: Any, **kwargs: Any) -> None:
            layouts.append(True)
            relayout(screen, *args, **kwargs)

        monkeypatch.setattr(type(app.screen), "_refresh_layout", counting)
        fill(app, 10)
        await pilot.pause()
        await pilot.pause()
        assert chat.max_scroll_y > 0 and "Answer number 9." in screen_text(pilot)
        assert layouts == []
        assert thumb(bar)  # drawn reversed, in the scrollbar's colour, over the track


async def test_page_keys_scroll_the_chat_from_the_input(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        chat = app.main.chat
        fill(app, 50)
        await pilot.pause()
        assert app.main.input.has_focus
        end = chat.scroll_y
        await pilot.press("pageup")
        await pilot.pause()
        assert chat.scroll_y < end and app.main.input.has_focus  # typing goes on
        assert "Answer number 49." not in screen_text(pilot)
        await pilot.press("pagedown")
        await pilot.pause()
        assert chat.scroll_y == end and "Answer number 49." in screen_text(pilot)
        await pilot.press("pageup", "pageup")
        app.main.input.load_text("more")
        chat.focus()
        await pilot.press("home")
        await until(pilot, lambda: "question number 0" in screen_text(pilot), "Home: the top")
        await pilot.press("end")
        await until(pilot, lambda: "Answer number 49." in screen_text(pilot), "End: the end")
        assert chat.following  # at the end, it follows new output again


async def test_a_tool_call_opens_from_the_keyboard_and_by_a_click(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        fill(app, 5)
        await send(pilot, "Read notes.txt")
        await idle(pilot)
        chat = app.main.chat
        (tool,) = (e for e in chat.entries if isinstance(e, ToolBlock))
        assert not tool.expanded
        await pilot.press("shift+tab")  # from the input to the chat: its newest tool call
        await until(pilot, lambda: chat.has_focus, "the chat has the focus")
        assert chat.selected is tool and tool.selected
        await pilot.press("enter")
        await pilot.pause()
        shown = screen_text(pilot)
        assert tool.expanded and "alpha" in shown  # its exact output, and its title above it
        assert "▼ ✓ read_file" in shown and shown.index("▼ ✓ read_file") < shown.index("alpha")
        await pilot.press("enter")
        await pilot.pause()
        assert not tool.expanded
        region = chat.region_of(tool)
        await pilot.click(offset=(region.x + 4, region.y))  # a click on its line
        await pilot.pause()
        assert tool.expanded and "alpha" in screen_text(pilot)


def typed(app: TuiagentApp, text: str) -> None:
    """Keys as a terminal hands them over in one read: all queued before any is handled."""
    driver = app._driver
    assert driver is not None
    for ch in text:
        key = "enter" if ch == "\r" else ch if ch.isalnum() else _character_to_key(ch)
        event = events.Key(key, ch)
        event.set_sender(app)
        driver.send_message(event)


async def test_messages_typed_in_one_go_stay_apart(make_app: MakeApp) -> None:
    """Keys after Enter that arrive before the app takes the message are the next message,
    never glued to the one sent (they were: 'List the files here.What does README.md say?')."""
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        first, second, third = "List the files here.", "What does README.md say?", "Read notes"
        typed(app, f"{first}\r{second}\r{third}")
        await until(pilot, lambda: app.main.input.text == third, "the last typed")
        await idle(pilot)
        await until(pilot, lambda: len(said(app)) == 2, "both sent")
        assert said(app) == [first, second]
        assert app.main.input.sent == [first, second]  # up recalls each as it was sent


async def test_text_faster_than_a_screen_a_frame_is_shown_5_times_a_second(
    make_app: MakeApp,
) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        chat = app.main.chat
        waits: list[float] = []  # how long each piece of text was to wait to be shown
        set_timer = chat.set_timer

        def timer(delay: float, callback: Any, **kwargs: Any) -> Any:
            waits.append(delay)
            return set_timer(delay, callback, **kwargs)

        chat.set_timer = timer  # type: ignore[method-assign]

        async def shown(text: str) -> None:
            chat.feed(text)
            await until(pilot, lambda: text.split()[-1] in screen_text(pilot), text[-20:])

        await shown("A few words.")
        view = chat.scrollable_content_region
        await shown("word " * view.area + "More than a screen.")  # within one frame
        await shown(" The next words.")  # a blur: in a fifth of a second
        await shown(" And then.")  # read again: a fifteenth
        chat.close_answer()
        await shown("The next answer.")
        assert waits == [1 / 15, 1 / 15, 1 / 5, 1 / 15, 1 / 15]


async def test_a_user_scrolled_up_stays_put_while_the_answer_streams(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        chat = app.main.chat
        fill(app, 30)
        await pilot.pause()
        await pilot.press("pageup", "pageup")
        await pilot.pause()
        seen, y = chat_text(pilot), chat.scroll_y
        for i in range(40):  # an answer streams under it
            chat.feed(f"Streamed paragraph {i}.\n\n")
            await pilot.pause(0.02)
        chat.close_answer()
        await pilot.pause()
        assert chat.scroll_y == y and chat_text(pilot) == seen  # not a line moved
        chat.focus()
        await pilot.press("end")
        await until(pilot, lambda: "Streamed paragraph 39." in screen_text(pilot), "the end")
        chat.feed("And one more line.")
        chat.close_answer()
        await until(pilot, lambda: "one more line" in screen_text(pilot), "followed again")


async def test_after_a_resize_only_what_is_in_view_is_drawn_again(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        chat = app.main.chat
        fill(app, 300)
        await pilot.pause()
        look, width = chat.look(), chat.scrollable_content_region.width
        for entry in chat.entries:  # all of it was seen once (scrolled through)
            entry.lines(look, width)
        await pilot.resize_terminal(90, 30)
        await pilot.pause()
        width = chat.scrollable_content_region.width
        redrawn = sum(e.drawn_as(chat.look(), width) for e in chat.entries)
        assert 0 < redrawn < 40  # what the screen shows, not all 600
        assert "Answer number 299." in screen_text(pilot)


async def test_a_queued_message_sent_later_leaves_a_user_reading_above_where_they_are(
    make_app: MakeApp,
) -> None:
    app = make_app(offline_tokens_per_second=30.0)  # slow enough to type the next one
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        chat = app.main.chat
        fill(app, 30)
        await pilot.pause()
        app.main.input.load_text("List the files here.")
        await pilot.press("enter")
        app.main.input.load_text("Read notes.txt")
        await pilot.press("enter")  # the agent is busy: queued, and the chat follows it
        assert app.main.input.queued == 1 and chat.following
        await pilot.press("pageup", "pageup")  # the user reads above
        await pilot.pause()
        seen = chat_text(pilot)
        await idle(pilot)  # the queued message was sent and answered meanwhile
        assert said(app)[-1] == "Read notes.txt" and "alpha" in app.main.chat.answers[-1].text
        now = chat_text(pilot)  # (the turns table grew under it: the chat is shorter)
        assert now == seen[: len(now)] and not chat.following
        chat.focus()
        await pilot.press("home")
        assert chat.scroll_y == 0
        await pilot.pause()
        assert "tuiagent: chat with an agent" in "\n".join(chat_text(pilot))
        await pilot.press("end")  # at once, not after an animation
        assert chat.following and chat.scroll_y == chat.max_scroll_y
        await pilot.pause()
        assert "alpha" in "\n".join(chat_text(pilot))
