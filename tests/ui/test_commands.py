"""The one table of commands: what it feeds (bindings, slash parsing, /help, the keymap check)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuiagent.errors import ConfigError
from tuiagent.ui.app import TuiagentApp
from tuiagent.ui.commands import (
    COMMANDS,
    KEYMAP_IDS,
    check_keymap,
    help_markdown,
    key_hint,
    parse_slash,
)

APP_PAGE = (
    next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
    / "docs"
    / "app.md"
)


def test_every_command_is_an_app_action_and_every_key_a_binding() -> None:
    for command in COMMANDS:
        assert callable(getattr(TuiagentApp, f"action_{command.id}", None)), command.id
    ids = [b.id for b in TuiagentApp.BINDINGS if not isinstance(b, tuple)]
    assert ids == list(KEYMAP_IDS) == [c.id for c in COMMANDS if c.key]


def test_slash_parsing_finds_the_command_and_its_argument() -> None:
    command, _, arg = parse_slash("/budget  2.50 ")
    assert command is not None and command.id == "budget" and arg == "2.50"
    assert command.action(arg) == "budget('2.50')"
    command, _, _ = parse_slash("/clear now")
    assert command is not None and command.action("now") == "clear"  # takes no argument
    assert parse_slash("/nope 1")[::2] == (None, "1") and parse_slash("/nope")[1] == "/nope"


def test_help_lists_every_command_with_the_keys_as_remapped() -> None:
    text = help_markdown({"cap_up": "f9"})
    for command in COMMANDS:
        assert command.help in text
        if command.slash:
            assert f"`{command.slash}" in text
    assert "| f9 | raise the cap by one step |" in text and "| f3 |" not in text


def test_the_keymap_ids_are_the_tables() -> None:
    check_keymap({"report": "f9", "quit": "ctrl+x"})
    with pytest.raises(ConfigError, match=r"^unknown config key 'keymap\.budget' \(known: "):
        check_keymap({"budget": "f9"})  # a slash command with no key: not remappable
    with pytest.raises(ConfigError, match=r"keymap\.report: 'f5' is already the key of"):
        check_keymap({"report": "f5"})


def test_the_manual_names_every_binding_id_and_slash_command() -> None:
    text = APP_PAGE.read_text(encoding="utf-8")
    for binding_id in KEYMAP_IDS:
        assert f"`{binding_id}`" in text
    for command in COMMANDS:
        if command.slash:
            assert f"`{command.slash}" in text


def test_a_hint_names_the_first_key_as_the_user_has_it() -> None:
    assert key_hint("cap_up") == "F3" and key_hint("interrupt") == "Esc"
    assert key_hint("cap_up", {"cap_up": "ctrl+up, f9"}) == "ctrl+up"
