"""No process a command starts outlives it, even when the command kills its supervisor.

Each run_command runs under a supervisor (reaper.py), a child subreaper that kills every
process the command started when the command ends. A command can kill that supervisor too
(`kill -9 $PPID`): its processes are then orphans, and an orphan goes to its nearest living
subreaper ancestor. So while a command runs, tuiagent is a child subreaper as well (Linux
`prctl(PR_SET_CHILD_SUBREAPER)`): the orphans become tuiagent's children, and once the
supervisor has exited, every child tuiagent adopted meanwhile is killed (the children of
those come to tuiagent in turn, and go the same way) and reaped.

Every process tuiagent starts on purpose while a command may run (supervisors, ripgrep) is
started by `spawn`, so an adopted child is told apart: not one of ours, and started after
the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from tuiagent.agent.tools.reaper import PR_SET_CHILD_SUBREAPER, prctl

SWEEP_S = 5.0  # a fork bomb is not chased for ever
_lock = threading.Lock()
_commands = 0  # commands running: tuiagent is a subreaper while there is one
_ours: set[int] = set()  # children tuiagent started on purpose and has not waited for yet


async def spawn(*argv: str, **kwargs: Any) -> asyncio.subprocess.Process:
    """asyncio.create_subprocess_exec, the child known as ours until `waited`."""
    proc = await asyncio.create_subprocess_exec(*argv, **kwargs)
    _ours.add(proc.pid)
    return proc


def waited(proc: asyncio.subprocess.Process) -> None:
    _ours.discard(proc.pid)


@contextlib.contextmanager
def adopting() -> Iterator[None]:
    """While a command runs: tuiagent is a child subreaper (what its supervisor leaves
    comes to tuiagent, not to init)."""
    global _commands
    with _lock:
        if _commands == 0:
            prctl(PR_SET_CHILD_SUBREAPER, 1)
        _commands += 1
    try:
        yield
    finally:
        with _lock:
            _commands -= 1
            if _commands == 0:
                prctl(PR_SET_CHILD_SUBREAPER, 0)


async def exited(pid: int) -> None:
    """Until the child `pid` has exited. (asyncio's own `wait()` waits for its pipes too,
    which what the command left may hold open.) It is left to asyncio to reap."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:  # gone already (ESRCH), or no pidfd here (ENOSYS): ask waitid instead
        fd = -1
    if fd >= 0:
        loop = asyncio.get_running_loop()
        gone: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not gone.done():
                gone.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await gone
        finally:
            loop.remove_reader(fd)
            os.close(fd)
        return
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return
        except ChildProcessError:
            return  # reaped already
        await asyncio.sleep(0.05)


def start_ticks(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (/proc/PID/stat field 22)."""
    fields = _stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def _stat(pid: int | str) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rpartition(b")")[2].split()
    except OSError:
        return None


def adopted(since: int) -> list[int]:
    """tuiagent's children that it did not start and that started at `since` or later."""
    me, found = os.getpid(), []
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit() or int(name) in _ours:
            continue
        fields = _stat(name)
        if fields and len(fields) > 19 and int(fields[1]) == me and int(fields[19]) >= since:
            found.append(int(name))
    return found


def kill_adopted(since: int) -> int:
    """Kill and reap every child adopted since `since`, and what they started; how many."""
    killed = 0
    stop_at = time.monotonic() + SWEEP_S
    while time.monotonic() < stop_at and (pids := adopted(since)):
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(
                    pid, signal.SIGKILL
                )  # a child of ours: its pid is not reused before we reap
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(pid, os.WNOHANG)[0] == 0 and time.monotonic() < stop_at:
                    time.sleep(0.002)
                killed += 1
    return killed
