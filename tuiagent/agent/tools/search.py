"""search_files on ripgrep (the `ripgrep` wheel's `rg`): a linear-time regex engine (no
catastrophic backtracking), `.gitignore`/`.ignore` rules applied (in a git repository or
not), hidden files and folders skipped, symlinks not followed, binary files and anything
that is not a regular file skipped. The search is killed at its deadline and the result
says it is partial; the output is bounded in matches and in characters per match.

ripgrep starts in the directory the workspace opened (`/proc/self/fd/N`, not its name: a
name swapped for a link meanwhile leads nowhere), or reads the one file opened (on its
stdin, labelled with its path). Below that directory, its walk is its own: it follows no
symlink, but a directory swapped for a link while it walks is not checked again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import os
import shutil
import stat
import sysconfig
from pathlib import Path
from typing import Any

from tuiagent.agent.tools.base import ToolError, as_utf8
from tuiagent.agent.tools.beneath import Opened
from tuiagent.agent.tools.lifetimes import spawn, waited

SEARCH_DEADLINE_S = 10.0
MAX_SEARCH_MATCHES = 5_000
MAX_MATCH_CHARS = 200
# Folders skipped even when no ignore file names them.
_SKIP_DIRS = ("node_modules", "__pycache__")


@functools.cache
def ripgrep() -> str | None:
    """The `rg` binary the `ripgrep` wheel installed (as a script beside this Python's
    console scripts), else one on PATH; None when there is none."""
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        for file in importlib.metadata.files("ripgrep") or []:
            if file.name in ("rg", "rg.exe"):
                located = Path(str(file.locate())).resolve()
                if located.is_file():
                    return str(located)
    for name in ("rg", "rg.exe"):
        beside = Path(sysconfig.get_path("scripts")) / name
        if beside.is_file():
            return str(beside)
    return shutil.which("rg")


def _command(rg: str, pattern: str, target: str) -> list[str]:
    return [
        rg,
        "--no-config",
        "--no-require-git",  # .gitignore applies outside a git repository too
        "--null",  # path NUL line:text, whatever the path holds
        "--line-number",
        "--with-filename",
        "--no-heading",
        "--color=never",
        "--sort=path",  # the same order every time
        "--max-columns=400",
        "--max-columns-preview",
        *(f"--glob=!{d}/" for d in _SKIP_DIRS),
        "--regexp",
        pattern,
        "--",
        target,
    ]


def _match_line(raw: bytes, target: str, shown: str) -> tuple[str, str] | None:
    """(path, "path:line:text") of one line of rg output, None for anything else; the
    searched `target` is shown as `shown` (its path from the workspace root)."""
    path, nul, rest = raw.partition(b"\0")
    number, colon, text = rest.partition(b":")
    if not nul or not colon or not number.isdigit():
        return None
    name = as_utf8(os.fsdecode(path))
    if name.startswith(target):
        name = shown + name[len(target) :]
    name = name.removeprefix("./")
    line = text.decode("utf-8", errors="replace").strip()[:MAX_MATCH_CHARS]
    return name, f"{name}:{int(number)}:{line}"


async def _read_errors(stream: asyncio.StreamReader | None, keep: bytearray) -> None:
    while stream is not None and (chunk := await stream.read(65_536)):
        keep += chunk[: max(0, 8192 - len(keep))]


def _where(base: Opened, root: Path) -> tuple[dict[str, Any], str, str]:
    """How rg is started on `base`: its cwd and what to search there, and the path of that
    from the workspace root. rg reaches what was opened through `/proc/self/fd/N` (resolved
    in its own process, which is passed the fd); without /proc, by name (racy)."""
    by_fd = f"/proc/self/fd/{base.fd}"
    if not os.path.exists(by_fd):
        return {"cwd": root}, base.path, base.path
    if stat.S_ISDIR(base.stat.st_mode):
        return {"cwd": by_fd, "pass_fds": (base.fd,)}, ".", base.path
    return {"pass_fds": (base.fd,)}, by_fd, base.path


async def search(root: Path, base: Opened, pattern: str, deadline_s: float) -> str:
    """Matches of `pattern` in the opened directory or file `base` as path:line:text lines
    (paths from the workspace root), under a head line "N matches for 'pattern' in F files"."""
    rg = ripgrep()
    if rg is None:
        raise ToolError("search needs ripgrep (the `ripgrep` package), which is not installed")
    how, target, shown = _where(base, root)
    proc = await spawn(
        *_command(rg, pattern, target),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        **how,
    )
    matches: list[str] = []
    files: set[str] = set()
    errors = bytearray()
    stopped = ""
    drain = asyncio.create_task(_read_errors(proc.stderr, errors))
    try:
        async with asyncio.timeout(deadline_s):
            assert proc.stdout is not None
            pending = b""
            while len(matches) < MAX_SEARCH_MATCHES and (chunk := await proc.stdout.read(65_536)):
                *lines, pending = (pending + chunk).split(b"\n")
                for raw in lines:
                    if (found := _match_line(raw, target, shown)) and len(
                        matches
                    ) < MAX_SEARCH_MATCHES:
                        files.add(found[0])
                        matches.append(found[1])
            if len(matches) >= MAX_SEARCH_MATCHES:
                stopped = f" (stopped at {MAX_SEARCH_MATCHES})"
            else:
                await drain
                await proc.wait()
    except TimeoutError:
        stopped = f" (partial: the search was stopped at its {deadline_s:g}s deadline)"
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.shield(proc.wait())
        waited(proc)
        await drain  # at EOF now that rg has exited
    message = errors.decode("utf-8", errors="replace")
    if proc.returncode == 2 and "regex parse error" in message:
        why = next(
            (
                ln.removeprefix("error:").strip()
                for ln in message.splitlines()
                if ln.startswith("error:")
            ),
            "cannot be parsed",
        )
        raise ToolError(f"invalid regular expression {pattern!r}: {why}")
    head = f"{len(matches)} matches for {pattern!r} in {len(files)} files{stopped}"
    if proc.returncode == 2 and not stopped:
        head += " (some files could not be read)"
    return "\n".join([head, *matches])
