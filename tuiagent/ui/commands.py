"""The app's commands, in one table: it feeds the slash commands, `/help`, the command
palette and the key bindings (with the user's `[keymap]` remaps).

Each command is an app action, `action_<id>`: a key, a palette entry and a slash command
all run it through `App.run_action`; a slash command's argument is the action's one
parameter. The binding ids that `[keymap]` remaps are the ids of the commands with a key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider

from tuiagent.config import Settings
from tuiagent.errors import ConfigError
from tuiagent.ui.format import money

if TYPE_CHECKING:
    from tuiagent.session import PromptCost


@dataclass(frozen=True)
class Command:
    id: str  # the action (`action_<id>` on the app) and the binding id `[keymap]` remaps
    help: str  # what it does: in /help, the palette and the key's tooltip
    title: str = ""  # its entry in the command palette ("": none, it takes an argument)
    key: str = ""  # the default key(s), comma-separated ("": no key)
    label: str = ""  # the key's label in the footer
    slash: str = ""  # its slash command ("": none)
    arg: str = ""  # the slash command's argument, as /help names it ("": none)
    priority: bool = True  # the key works even where the input has focus

    def action(self, arg: str | None = None) -> str:
        """The action string `App.run_action` takes."""
        return self.id if arg is None or not self.arg else f"{self.id}({arg!r})"


COMMANDS = (
    # Keys, in the footer's order.
    Command("cap_down", "lower the cap by one step", "Lower the cap", key="f2", label="Cap-"),
    Command("cap_up", "raise the cap by one step", "Raise the cap", key="f3", label="Cap+"),
    Command(
        "cycle_tier",
        "cycle the tier auto -> fast -> balanced -> deep",
        "Cycle the tier",
        key="f4",
        label="Tier",
    ),
    # Not a priority key: Escape also closes dialogs and the palette.
    Command(
        "interrupt",
        "stop the running turn",
        "Stop the turn",
        key="escape",
        label="Stop",
        priority=False,
    ),
    Command(
        "toggle_panels",
        "cycle the panels: all or the chat alone; narrow, one at a time",
        "Toggle panels",
        key="f5",
        label="Panels",
    ),
    Command(
        "report", "open the cost report of the recent runs", "Cost report", key="f8", label="Report"
    ),
    Command(
        "go_on",
        "go on with a request halted at max_turns, with as many calls again",
        "Go on",
        key="f6",
        label="Go on",
    ),
    # In the palette as Textual's own "Quit the application".
    Command("quit", "quit", key="ctrl+q", label="Quit"),
    # Slash commands, in /help's order.
    Command(
        "budget",
        "set the spending cap, e.g. `/budget 2.50` (never below what is spent)",
        slash="/budget",
        arg="USD",
    ),
    Command("tier", "auto, fast, balanced or deep", slash="/tier", arg="TIER"),
    Command(
        "clear",
        "start a new conversation: the next request has no earlier messages (the budget goes on)",
        "New conversation",
        slash="/clear",
    ),
    Command(
        "compact",
        "summarise the conversation now (a priced call on the fast tier)",
        "Compact the conversation",
        slash="/compact",
    ),
    Command(
        "undo",
        "put back the last change the agent made to a file; `/undo all`: every change of "
        "this session, newest first",
        "Undo the last file change",
        slash="/undo",
        arg="[all]",
    ),
    Command(
        "turns",
        "allow N model calls per request; goes on with a request halted at the limit",
        slash="/turns",
        arg="N",
    ),
    Command(
        "system",
        "show the system prompt, its size and what it costs per turn",
        "Show the system prompt",
        slash="/system",
    ),
    Command("help", "this help", "Help: commands and keys", slash="/help"),
)

BY_ID = {c.id: c for c in COMMANDS}
BY_SLASH = {c.slash: c for c in COMMANDS if c.slash}
# The ids `[keymap]` may remap: the commands with a key.
KEYMAP_IDS = tuple(c.id for c in COMMANDS if c.key)


def bindings(*ids: str) -> list[BindingType]:
    """The key bindings of these commands (all with a key when none are named)."""
    chosen = [BY_ID[i] for i in ids] if ids else [c for c in COMMANDS if c.key]
    return [
        Binding(
            c.key,
            c.id,
            c.label or c.title,
            id=c.id,
            tooltip=c.help,
            priority=c.priority,
        )
        for c in chosen
    ]


def keys_of(command: Command, keymap: Mapping[str, str]) -> str:
    """The key(s) of a command as the user has them."""
    return keymap.get(command.id, command.key)


def key_hint(command_id: str, keymap: Mapping[str, str] | None = None) -> str:
    """The key to name in a hint on screen ("F3", "Esc"): the command's first key as the
    user has it."""
    key = keys_of(BY_ID[command_id], keymap or {}).split(",")[0].strip()
    if key == "escape":
        return "Esc"
    return key.upper() if key[:1] == "f" and key[1:].isdigit() else key


def parse_slash(text: str) -> tuple[Command | None, str, str]:
    """`/name arg` -> (its command or None, the name, the argument)."""
    name, _, arg = text.strip().partition(" ")
    return BY_SLASH.get(name), name, arg.strip()


def help_markdown(keymap: Mapping[str, str]) -> str:
    """/help: the slash commands and the keys, as the user has them."""
    rows = [
        f"| `{c.slash}{' ' + c.arg if c.arg else ''}` | {c.help} |" for c in COMMANDS if c.slash
    ]
    keys = [f"| {keys_of(c, keymap)} | {c.help} |" for c in COMMANDS if c.key]
    return (
        "| command | what it does |\n| --- | --- |\n" + "\n".join(rows) + "\n\n"
        "| key | what it does |\n| --- | --- |\n" + "\n".join(keys) + "\n\n"
        "Enter sends, shift+enter or ctrl+j starts a new line, up/down recall earlier "
        "messages. ctrl+p opens the command palette."
    )


def system_markdown(settings: Settings, tokens: int, costs: Iterable[PromptCost]) -> str:
    """/system: where the system prompt comes from, its size, and what it costs per turn on
    whichever tier the turn runs, plain or read from the cache."""
    source = (
        f"from {settings.run.system_prompt_file}"
        if settings.run.system_prompt_file
        else "config `system_prompt`"
        if settings.run.system_prompt != Settings().run.system_prompt
        else "built in"
    )
    lines = [f"**System prompt** ({source}): {tokens:,} tokens"]
    lines += [
        f"- costs {money(c.plain, 6)} per turn on {c.model} ({c.tier}), "
        f"{money(c.cached, 6)} when cached"
        for c in costs
    ]
    return "\n\n".join(lines)


class CommandsProvider(Provider):
    """The command palette's entries: the table's commands that need no argument and can
    run now (F6's "Go on" only while a request is halted at max_turns)."""

    def _entries(self) -> Iterable[tuple[str, str, Command]]:
        app = self.app
        keymap: Mapping[str, str] = getattr(app, "keymap", {})  # the user's [keymap]
        for c in COMMANDS:
            if c.title and app.check_action(c.id, ()) is not False:
                keys = keys_of(c, keymap)
                yield c.title, f"{c.help} ({keys or c.slash})", c

    async def discover(self) -> Hits:
        for title, help_text, c in self._entries():
            yield DiscoveryHit(title, partial(self.app.run_action, c.action()), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, c in self._entries():
            if (score := matcher.match(title)) > 0:
                yield Hit(
                    score,
                    matcher.highlight(title),
                    partial(self.app.run_action, c.action()),
                    help=help_text,
                )


# --- the user's [keymap], checked before the screen ----------------------------

# Keys the app keeps for itself: the input's own editing keys and the command palette.
RESERVED_KEYS = {
    "enter": "sends the message",
    "shift+enter": "starts a new line",
    "ctrl+j": "starts a new line",
    "tab": "moves the focus",
    "shift+tab": "moves the focus",
    "up": "recalls earlier messages",
    "down": "recalls earlier messages",
    "backspace": "edits the input",
    "ctrl+p": "opens the command palette",
}
MODIFIERS = {"ctrl", "shift", "alt", "meta", "super", "hyper"}


def _known_key(key: str) -> bool:
    from textual.keys import Keys, key_to_character

    *mods, base = key.split("+")
    if not base or not set(mods) <= MODIFIERS:
        return False
    names = {k.value.rsplit("+", 1)[-1] for k in Keys}
    return base in names or (len(base) == 1 and base.isprintable()) or bool(key_to_character(base))


def check_keymap(keymap: Mapping[str, str]) -> None:
    """Each id names a command with a key, each remapped key is a key Textual knows, and no
    key does two things: one line that names the config key otherwise (exit 2)."""
    for binding_id in keymap:
        if binding_id not in KEYMAP_IDS:
            raise ConfigError(
                f"unknown config key 'keymap.{binding_id}' (known: {', '.join(KEYMAP_IDS)})"
            )
    taken: dict[str, str] = {}
    for binding_id in KEYMAP_IDS:
        name = f"keymap.{binding_id}"
        for key in keys_of(BY_ID[binding_id], keymap).split(","):
            key = key.strip()
            if not _known_key(key):
                raise ConfigError(f"{name}: {key!r} is not a key name (e.g. 'f9', 'ctrl+t')")
            if len(key) == 1 and key.isprintable():
                raise ConfigError(
                    f"{name}: {key!r} would be typed into the input; pick 'f9' or 'ctrl+t'"
                )
            if key in RESERVED_KEYS:
                raise ConfigError(f"{name}: {key!r} {RESERVED_KEYS[key]} and cannot be remapped")
            if key in taken:
                raise ConfigError(
                    f"{name}: {key!r} is already the key of {taken[key]} "
                    f"({BY_ID[taken[key]].help}); remap that one too"
                )
            taken[key] = binding_id
