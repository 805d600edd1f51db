"""The supervisor of one run_command: `python reaper.py TIMEOUT_S ARGV...`.

It makes itself a child subreaper (Linux `prctl(PR_SET_CHILD_SUBREAPER)`, unprivileged),
so every process the command starts stays its descendant even after `setsid`, a double
fork or an exiting parent. When the command's first process exits, when TIMEOUT_S passes,
or on SIGTERM / SIGINT / SIGHUP (and when tuiagent dies: `PR_SET_PDEATHSIG`), it kills
every descendant with SIGKILL and reaps them all before it exits with the command's
status (124 after its own timeout, 128+N after signal N). Nothing the command started
outlives it. Standalone on purpose: it runs as `python -I -S` and imports only the stdlib.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from types import FrameType

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
TIMED_OUT = 124


class _Stop(Exception):
    def __init__(self, signum: int) -> None:
        self.signum = signum


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signum)


def prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def descendants(root: int) -> list[int]:
    """Every live process below `root`, read from /proc (parents first)."""
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(name))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_all(group: int) -> None:
    """SIGKILL the command's process group and every descendant, and reap them until none
    is left. As subreaper, every descendant whose parent dies becomes our child, so
    waitpid sees them all (where there is no /proc, only the group is reached)."""
    me = os.getpid()
    if group > 0:
        with contextlib.suppress(OSError):
            os.killpg(group, signal.SIGKILL)
    while True:
        for pid in descendants(me):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.005)


def main(argv: list[str]) -> int:
    timeout_s, command = float(argv[0]), argv[1:]
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
        signal.signal(signum, _stop)
    status, child = 0, 0
    try:
        if os.getppid() == 1:  # tuiagent died before the death signal was set
            raise _Stop(signal.SIGTERM)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        child = os.fork()
        if child == 0:
            try:
                for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
                    signal.signal(signum, signal.SIG_DFL)
                os.setpgid(0, 0)
                os.execvp(command[0], command)
            finally:
                os._exit(127)
        while True:
            pid, wait_status = os.waitpid(-1, 0)
            if pid == child:
                status = os.waitstatus_to_exitcode(wait_status)
                status = 128 - status if status < 0 else status
                break
    except _Stop as stop:
        status = TIMED_OUT if stop.signum == signal.SIGALRM else 128 + stop.signum
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
            signal.signal(signum, signal.SIG_IGN)
    kill_all(child)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
