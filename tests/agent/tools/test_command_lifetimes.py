"""Commands cannot outlive their command, even when the command kills its supervisor: what
the supervisor leaves comes to tuiagent (a child subreaper while a command runs), which
kills it and reaps it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.support.processes import processes_with
from tuiagent.agent.tools import Toolbox, Workspace
from tuiagent.agent.tools.command import CommandRunner
from tuiagent.agent.tools.lifetimes import adopted

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def ticks_now() -> int:
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK"))


def runner(workspace: Path, timeout_s: float = 20) -> Toolbox:
    box = Toolbox()
    box.add(CommandRunner(Workspace(workspace), timeout_s=timeout_s).tool())
    return box


@pytest.mark.parametrize(
    "command",
    [
        # The issue's: the command kills its supervisor, its setsid child lives on.
        "setsid sh -c 'sleep {m}' & sleep 0.3; kill -9 $PPID",
        # At once, before anything could look.
        "setsid sleep {m} & kill -9 $PPID",
        # The shell itself goes on after killing its supervisor.
        "kill -9 $PPID; exec sleep {m}",
        # Double-forked, then the supervisor killed by a grandchild.
        "(setsid sh -c 'sleep {m} & kill -9 '$PPID' ; sleep {m}' &); sleep {m}",
        # SIGTERM (the supervisor's own signal) from the command.
        "setsid sleep {m} & kill -TERM $PPID; sleep {m}",
    ],
)
async def test_a_command_that_kills_its_supervisor_leaves_nothing(
    workspace: Path, command: str
) -> None:
    marker = f"31{os.getpid() % 10000}{len(command)}"
    started, since = time.monotonic(), ticks_now()
    out = await runner(workspace).call("run_command", {"command": command.format(m=marker)})
    took, left, zombies = time.monotonic() - started, processes_with(marker), adopted(since)
    # Nothing left, no zombie (what was killed was reaped), and not held until the timeout.
    assert (left, zombies) == ([], []), f"{len(left)} left after {took:.1f}s: {out.text}"
    assert took < 15, out.text


async def test_tuiagent_is_a_subreaper_only_while_a_command_runs(workspace: Path) -> None:
    from tuiagent.agent.tools.reaper import prctl

    PR_GET_CHILD_SUBREAPER = 37
    import ctypes

    def subreaper() -> int:
        value = ctypes.c_int(0)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(value), 0, 0, 0)
        return value.value

    assert prctl is not None and subreaper() == 0
    out = await runner(workspace).call("run_command", {"command": "echo hi"})
    assert "hi" in out.text and subreaper() == 0
