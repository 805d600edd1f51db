"""The workspace sandbox and the file tools: list_dir, read_file, search_files.

Every path is resolved (symlinks followed) and must stay inside the workspace root; a path
that leads out (`..`, absolute, a symlink pointing outside) is refused and never read. A
symlink loop is an error result. Only regular files are opened: a FIFO, a device or a
socket is described by kind from its `stat` (which opens nothing) and refused, so no read
can block. Reads go by chunks of bytes, so memory stays bounded on any file (one line of
3 GB included), and stop at their deadline with what they have.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from tuiagent.agent.tools.base import Tool, ToolError, in_thread
from tuiagent.agent.tools.search import SEARCH_DEADLINE_S, search
from tuiagent.errors import UsageError

MAX_READ_BYTES = 2_000_000
MAX_LIST_ENTRIES = 5_000
# A read or a listing stops itself after this long and says so; the tool's own deadline,
# a little longer, is the backstop.
FILE_DEADLINE_S = 10.0
_CHUNK = 65_536

_KINDS: tuple[tuple[Callable[[int], bool], str, str], ...] = (
    (stat.S_ISREG, "file", "a regular file"),
    (stat.S_ISDIR, "dir", "a directory"),
    (stat.S_ISLNK, "link", "a symbolic link"),
    (stat.S_ISFIFO, "fifo", "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "socket", "a socket"),
    (stat.S_ISCHR, "device", "a character device"),
    (stat.S_ISBLK, "device", "a block device"),
)


def kind_of(mode: int) -> tuple[str, str]:
    """The short kind of a file mode (file, dir, link, fifo, socket, device) and its words."""
    for test, short, words in _KINDS:
        if test(mode):
            return short, words
    return "other", "not a regular file"


def _open_regular(target: Path, path: str) -> IO[bytes]:
    """`target` opened for reading if it is a regular file. It is checked again on the open
    descriptor (O_NONBLOCK: were it swapped for a FIFO meanwhile, the open cannot block)."""
    fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ToolError(f"{path} is {kind_of(mode)[1]}; only regular files are read")
    return os.fdopen(fd, "rb")


def _page(fh: IO[bytes], offset: int, limit: int | None, stop_at: float) -> tuple[bytes, str]:
    """Lines offset..offset+limit, read in chunks of at most _CHUNK bytes (a line of any
    length costs bounded memory), and why the read stopped early ("" when it did not)."""
    out = bytearray()
    line, end = 0, None if limit is None else offset + limit
    while end is None or line < end:
        if time.monotonic() > stop_at:
            return bytes(out), "deadline"
        piece = fh.readline(_CHUNK)
        if not piece:
            break
        if line >= offset:
            room = MAX_READ_BYTES - len(out)
            out += piece[:room]
            if len(piece) > room:
                return bytes(out), "size"
        line += piece.endswith(b"\n")
    return bytes(out), ""


class Workspace:
    def __init__(self, root: Path) -> None:
        if not root.exists():
            raise UsageError(f"workspace not found: {root}")
        if not root.is_dir():
            raise UsageError(f"workspace is not a directory: {root}")
        if not os.access(root, os.R_OK | os.X_OK):
            raise UsageError(f"workspace is not readable: {root}")
        self.root = root.resolve()
        self.search_deadline_s = SEARCH_DEADLINE_S

    def _inside(self, target: Path) -> bool:
        return target == self.root or self.root in target.parents

    def resolve(self, path: str) -> Path:
        """The real path of an existing `path` inside the workspace, or ToolError."""
        if not isinstance(path, str) or not path:
            raise ToolError("path must be a non-empty string")
        if Path(path).is_absolute():
            raise ToolError(f"path {path!r} is absolute; use a path inside the workspace")
        joined = self.root / path
        try:
            target = Path(os.path.realpath(joined, strict=True))
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ToolError(f"path {path!r} is a symlink loop; refused") from None
            if not self._inside(Path(os.path.realpath(joined))):
                raise ToolError(f"path {path!r} leads outside the workspace; refused") from None
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                raise ToolError(f"no such file or directory: {path}") from None
            raise ToolError(f"cannot open {path}: {exc.strerror or exc}") from None
        if not self._inside(target):
            raise ToolError(f"path {path!r} leads outside the workspace; refused")
        return target

    def relative(self, path: Path) -> str:
        rel = path.relative_to(self.root).as_posix()
        return rel or "."

    # --- tools -------------------------------------------------------------

    async def list_dir(self, args: dict[str, Any]) -> str:
        path = args.get("path") or "."
        target = self.resolve(path)
        return await in_thread(lambda: self._list(target, path))

    def _list(self, target: Path, path: str) -> str:
        mode = os.stat(target).st_mode
        if not stat.S_ISDIR(mode):
            raise ToolError(f"not a directory: {path} is {kind_of(mode)[1]}")
        stop_at = time.monotonic() + FILE_DEADLINE_S
        try:
            with os.scandir(target) as it:
                entries = sorted(it, key=lambda e: e.name)
        except PermissionError:
            raise ToolError(f"permission denied: {path}") from None
        lines = [f"Directory {self.relative(target)} ({len(entries)} entries)"]
        for n, entry in enumerate(entries):
            if n >= MAX_LIST_ENTRIES or time.monotonic() > stop_at:
                lines.append(f"[… {len(entries) - n:,} more entries not shown]")
                break
            try:
                st = entry.stat(follow_symlinks=False)  # an lstat: opens nothing
            except OSError:
                lines.append(f"{'?':<4}  {'-':>12}  {entry.name}")
                continue
            kind = kind_of(st.st_mode)[0]
            size = f"{st.st_size:,}" if kind == "file" else "-"
            suffix = "/" if kind == "dir" else ""
            lines.append(f"{kind:<4}  {size:>12}  {entry.name}{suffix}")
        return "\n".join(lines)

    async def read_file(self, args: dict[str, Any]) -> str:
        path = args.get("path", "")
        target = self.resolve(path)
        offset = int(args.get("offset") or 0)
        limit = None if args.get("limit") is None else int(args["limit"])
        if offset < 0 or (limit is not None and limit < 1):
            raise ToolError("offset must be >= 0 and limit >= 1")
        mode = os.stat(target).st_mode  # a stat opens nothing: a FIFO is never opened
        if stat.S_ISDIR(mode):
            raise ToolError(f"{path} is a directory; use list_dir")
        if not stat.S_ISREG(mode):
            raise ToolError(f"{path} is {kind_of(mode)[1]}; only regular files are read")
        try:
            return await in_thread(lambda: self._read(target, path, offset, limit))
        except PermissionError:
            raise ToolError(f"permission denied: {path}") from None
        except OSError as exc:
            raise ToolError(f"cannot read {path}: {exc.strerror or exc}") from None

    def _read(self, target: Path, path: str, offset: int, limit: int | None) -> str:
        """Only what is asked is read: a page of a huge file does not load the whole file."""
        stop_at = time.monotonic() + FILE_DEADLINE_S
        paged = bool(offset) or limit is not None
        with _open_regular(target, path) as fh:
            size = os.fstat(fh.fileno()).st_size
            if b"\x00" in fh.read(8192):
                raise ToolError(f"{path} is a binary file ({size:,} bytes); not shown")
            fh.seek(0)
            if paged:
                data, stopped = _page(fh, offset, limit, stop_at)
            else:
                data = fh.read(MAX_READ_BYTES + 1)
                stopped = "size" if len(data) > MAX_READ_BYTES else ""
                data = data[:MAX_READ_BYTES]
        if b"\x00" in data:
            raise ToolError(f"{path} is a binary file ({size:,} bytes); not shown")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start >= len(data) - 3 and stopped:  # a character cut by the read limit
                text = data[: exc.start].decode("utf-8", errors="replace")
            else:
                text = data.decode("utf-8", errors="replace")
                text = (
                    f"[{path} is not valid UTF-8 (first bad byte at offset {exc.start:,}); "
                    "undecodable bytes are shown as \ufffd]\n" + text
                )
        if paged:
            text = "\n".join(text.splitlines())
        if stopped == "size":
            whole = "" if paged else f" of {size:,}"  # a page's bytes are not the file's first
            text += f"\n[read stopped at {MAX_READ_BYTES:,} bytes{whole}; use offset/limit to page]"
        elif stopped == "deadline":
            text += (
                f"\n[read stopped at its {FILE_DEADLINE_S:g}s deadline; use offset/limit to page]"
            )
        return text

    async def search_files(self, args: dict[str, Any]) -> str:
        pattern = args.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            raise ToolError("pattern must be a non-empty string")
        path = args.get("path") or "."
        base = self.resolve(path)
        mode = os.stat(base).st_mode
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            raise ToolError(f"{path} is {kind_of(mode)[1]}; only regular files are searched")
        return await search(self.root, self.relative(base), pattern, self.search_deadline_s)

    def tools(self) -> list[Tool]:
        path_prop = {"type": "string", "description": "A path relative to the workspace root."}
        file_deadline = FILE_DEADLINE_S + 5
        return [
            Tool(
                "list_dir",
                "List a directory of the workspace: each entry's kind, size in bytes and name.",
                {"type": "object", "properties": {"path": path_prop}, "required": []},
                self.list_dir,
                deadline_s=file_deadline,
            ),
            Tool(
                "read_file",
                "Read a text file of the workspace (regular files only). offset and limit "
                "select lines (0-based); at most 2 MB is returned.",
                {
                    "type": "object",
                    "properties": {
                        "path": path_prop,
                        "offset": {"type": "integer", "minimum": 0},
                        "limit": {"type": "integer", "minimum": 1},
                    },
                    "required": ["path"],
                },
                self.read_file,
                deadline_s=file_deadline,
            ),
            Tool(
                "search_files",
                "Search the workspace's text files for a regular expression (ripgrep syntax; "
                "files ignored by .gitignore and hidden files are skipped); one line per "
                "match as path:line:text.",
                {
                    "type": "object",
                    "properties": {"pattern": {"type": "string"}, "path": path_prop},
                    "required": ["pattern"],
                },
                self.search_files,
                deadline_s=self.search_deadline_s + 5,
            ),
        ]
