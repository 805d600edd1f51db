"""run_command: a shell command in the workspace, asked for first, with a timeout and a cap.

Off unless enabled (`allow_commands = true` or `--allow-commands`). The agent asks its
`approve` hook before each command (the UI shows a dialog). The command runs under a small
supervisor (`reaper.py`, a child subreaper) that kills every process the command started,
`setsid` and daemonised children too, when the command ends, at its timeout, or when the
call is cancelled; a command that outlives its timeout is reported as an error result. A
command that kills its supervisor leaves its processes to tuiagent, which kills them
(lifetimes.py). The child gets no stdin and no API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from tuiagent.agent.tools.base import Tool, ToolError
from tuiagent.agent.tools.lifetimes import (
    adopting,
    exited,
    kill_adopted,
    spawn,
    start_ticks,
    waited,
)
from tuiagent.agent.tools.workspace import Workspace

OUTPUT_CAP_BYTES = 200_000
_SECRET_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
_REAPER = Path(__file__).with_name("reaper.py")


class _Capped:
    """The head and tail of a stream, at most `cap` bytes in all; the middle is counted."""

    def __init__(self, cap: int) -> None:
        self.half = cap // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        room = self.half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        self.tail += chunk
        if len(self.tail) > self.half:
            over = len(self.tail) - self.half
            self.dropped += over
            del self.tail[:over]

    def text(self) -> str:
        head = self.head.decode("utf-8", errors="replace")
        tail = self.tail.decode("utf-8", errors="replace")
        if self.dropped:
            return f"{head}\n[… {self.dropped:,} bytes of output dropped …]\n{tail}"
        return head + tail


async def _drain(stream: asyncio.StreamReader | None, sink: _Capped) -> None:
    if stream is None:
        return
    while chunk := await stream.read(65536):
        sink.add(chunk)


class CommandRunner:
    def __init__(self, workspace: Workspace, timeout_s: float, cap: int = OUTPUT_CAP_BYTES):
        self.workspace = workspace
        self.timeout_s = timeout_s
        self.cap = cap

    async def run_command(self, args: dict[str, Any]) -> str:
        command = args.get("command")
        if not isinstance(command, str) or not command.strip():
            raise ToolError("command must be a non-empty string")
        env = {k: v for k, v in os.environ.items() if k not in _SECRET_ENV}
        with adopting():  # what the supervisor leaves (killed by the command) comes to us
            try:
                proc = await spawn(
                    # isolated and without site: the supervisor imports only the stdlib
                    *(sys.executable, "-I", "-S", str(_REAPER), f"{self.timeout_s + 1:g}"),
                    *("/bin/sh", "-c", command),
                    cwd=self.workspace.root,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=env,
                    start_new_session=True,  # not in the terminal's group: Ctrl-C is ours to relay
                )
            except OSError as exc:
                raise ToolError(f"cannot start the command: {exc.strerror}") from None
            since = start_ticks(proc.pid) or 0
            try:
                return await self._wait(proc, command, since)
            finally:
                kill_adopted(since)  # every way it ends: nothing it started is left
                waited(proc)

    async def _wait(self, proc: asyncio.subprocess.Process, command: str, since: int) -> str:
        out, err = _Capped(self.cap), _Capped(self.cap // 4)
        drains = asyncio.gather(_drain(proc.stdout, out), _drain(proc.stderr, err))
        # At exit asyncio cancels the drains themselves: their error is ours to drop, not to log.
        drains.add_done_callback(lambda done: done.cancelled() or done.exception())
        left = 0
        try:
            async with asyncio.timeout(self.timeout_s):
                await exited(proc.pid)
                # The supervisor is gone. Had the command killed it, what the command started
                # is ours now, and holds the output open: it goes first.
                left = kill_adopted(since)
                await drains
                await proc.wait()
        except TimeoutError:
            _stop(proc)
            await proc.wait()
            raise ToolError(
                f"command timed out after {self.timeout_s:g}s and was killed: {command}\n"
                + _sections(out, err)
            ) from None
        except asyncio.CancelledError:
            _stop(proc)
            with contextlib.suppress(TimeoutError):  # it kills in milliseconds; never hang here
                await asyncio.wait_for(asyncio.shield(proc.wait()), 2)
            raise
        status = f"exit status {proc.returncode}\n"
        if left:
            status += (
                f"[the command killed its supervisor; the {left} process(es) it left were killed]\n"
            )
        return status + _sections(out, err)

    def tool(self) -> Tool:
        return Tool(
            "run_command",
            "Run a shell command in the workspace (the user approves each one). Returns the "
            f"exit status, stdout and stderr; killed after {self.timeout_s:g}s.",
            {
                "type": "object",
                "properties": {"command": {"type": "string"}},
                "required": ["command"],
            },
            self.run_command,
            needs_approval=True,
            deadline_s=self.timeout_s + 5,
        )


def _sections(out: _Capped, err: _Capped) -> str:
    parts = [f"--- stdout ---\n{out.text()}"]
    if err.head or err.tail:
        parts.append(f"--- stderr ---\n{err.text()}")
    return "\n".join(parts)


def _stop(proc: asyncio.subprocess.Process) -> None:
    """Ask the supervisor to kill everything the command started (it does, then exits)."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
