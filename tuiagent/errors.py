"""Errors a user can cause. Each carries one line that names the problem; the CLI prints it."""

from __future__ import annotations

from tuiagent.redact import redact


class TuiagentError(Exception):
    """An error with a message fit for the user and an exit status (never holding a key)."""

    exit_code = 1

    def __str__(self) -> str:
        return redact(super().__str__())


class UsageError(TuiagentError):
    """Bad flags, bad config, a missing workspace, an unpriced model: exit 2."""

    exit_code = 2


class ConfigError(UsageError):
    """A config file that cannot be used. The message names the key."""


class LimitError(TuiagentError):
    """A limit (the cost cap) that leaves no room for what was asked: exit 3."""

    exit_code = 3
