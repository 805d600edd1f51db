"""The Textual app: the only Textual code in tuiagent. The core never imports it."""

from tuiagent.ui.terminal import install

install()  # before any widget or driver is made: see ui/terminal.py
