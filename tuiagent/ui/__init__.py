"""The Textual app: the only Textual code in tuiagent. The core never imports it."""

from tuiagent.ui.printable import install

install()  # before any widget is made: see ui/printable.py
