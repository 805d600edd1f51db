"""A task's checks on one run: its answer against a regex, the files it had to change, and
a judge call (deep tier) that says whether the answer does what the task asks."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from tuiagent.agent.experiment import text_request
from tuiagent.agent.tools import ToolError
from tuiagent.agent.tools.beneath import Beneath
from tuiagent.llm.markers import CHECK_MARKER

CHECK_SYSTEM = (
    f"{CHECK_MARKER} You check whether an answer does what a criterion asks. Reply with one "
    "line: pass or fail, a colon, and a reason of at most 15 words."
)
CHECK_MAX_TOKENS = 120
_VERDICT = re.compile(r"^\W*(pass|fail)\b\W*(.*)$", re.IGNORECASE)


def check_request(model: str, prompt: str, criterion: str, answer: str) -> dict[str, Any]:
    return text_request(
        model,
        CHECK_MAX_TOKENS,
        CHECK_SYSTEM,
        f"<task>\n{prompt}\n</task>\n<criterion>\n{criterion}\n</criterion>\n"
        f"<answer>\n{answer}\n</answer>",
    )


def parse_check(answer: str) -> tuple[bool, str]:
    """(passed, reason) from the judge's answer; no verdict line is a fail."""
    for line in answer.splitlines():
        if m := _VERDICT.match(line.strip()):
            return m.group(1).lower() == "pass", m.group(2).strip()[:160] or "(no reason)"
    return False, f"the judge named no verdict ({answer.strip()[:80]!r})"


def file_states(root: Path, paths: tuple[str, ...]) -> dict[str, str]:
    """What each path holds now (a digest, or why it cannot be read), read beneath
    `root` only: a symlink in the copy never leads a check outside it."""
    beneath = Beneath(root)
    try:
        return {path: _state(beneath, path) for path in paths}
    finally:
        beneath.close()


def _state(beneath: Beneath, path: str) -> str:
    try:
        opened = beneath.open_file(path)
    except (ToolError, OSError) as exc:
        return f"unreadable: {exc}"
    digest = hashlib.sha256()
    with opened:
        while chunk := os.read(opened.fd, 1 << 16):
            digest.update(chunk)
    return digest.hexdigest()
