"""The workspace sandbox and the file tools: list_dir, read_file, search_files.

Every path is opened through `Beneath` (beneath.py): walked from the workspace root one name
at a time, symlinks read and walked, never above the root, and what was opened is what is
checked, so a path that leads out (`..`, absolute, a symlink pointing outside, a name
swapped for a link meanwhile) is refused and never read. A symlink loop is an error result.
Only regular files are opened: a FIFO, a device or a socket is described by kind from its
`lstat` (which opens nothing) and refused, so no read can block. Reads go by chunks of
bytes, so memory stays bounded on any file (one line of 3 GB included), and stop at their
deadline with what they have. A file name that is not UTF-8 is shown with `\\xNN` for each
such byte, and opens by that spelling.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO, Any

from tuiagent.agent.tools.base import Tool, ToolError, as_utf8, in_thread
from tuiagent.agent.tools.beneath import Beneath, kind_of
from tuiagent.agent.tools.search import SEARCH_DEADLINE_S, search
from tuiagent.errors import UsageError

MAX_READ_BYTES = 2_000_000
MAX_LIST_ENTRIES = 5_000
# A read or a listing stops itself after this long and says so; the tool's own deadline,
# a little longer, is the backstop.
FILE_DEADLINE_S = 10.0
_CHUNK = 65_536


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


def _entry_line(entry: os.DirEntry[str]) -> str:
    """One entry of a listing: kind, size, name (a directory's with a slash)."""
    name = as_utf8(entry.name)
    try:
        st = entry.stat(follow_symlinks=False)  # an lstat: opens nothing
    except OSError:
        return f"{'?':<4}  {'-':>12}  {name}"
    kind = kind_of(st.st_mode)[0]
    size = f"{st.st_size:,}" if kind == "file" else "-"
    return f"{kind:<4}  {size:>12}  {name}{'/' if kind == 'dir' else ''}"


class Workspace:
    def __init__(self, root: Path) -> None:
        if not root.exists():
            raise UsageError(f"workspace not found: {root}")
        if not root.is_dir():
            raise UsageError(f"workspace is not a directory: {root}")
        if not os.access(root, os.R_OK | os.X_OK):
            raise UsageError(f"workspace is not readable: {root}")
        self.files = Beneath(root)
        self.root = self.files.root
        self.search_deadline_s = SEARCH_DEADLINE_S

    # --- tools -------------------------------------------------------------

    async def list_dir(self, args: dict[str, Any]) -> str:
        path = args.get("path") or "."
        return await in_thread(lambda: self._list(path))

    def _list(self, path: str) -> str:
        stop_at = time.monotonic() + FILE_DEADLINE_S
        with self.files.open_dir(path) as folder:  # entries are stat'ed in it: keep it open
            try:
                with os.scandir(folder.fd) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except PermissionError:
                raise ToolError(f"permission denied: {path}") from None
            lines = [f"Directory {folder.path} ({len(entries)} entries)"]
            for n, entry in enumerate(entries):
                if n >= MAX_LIST_ENTRIES or time.monotonic() > stop_at:
                    lines.append(f"[… {len(entries) - n:,} more entries not shown]")
                    break
                lines.append(_entry_line(entry))
        if any(e.name != as_utf8(e.name) for e in entries):
            lines.append("[\\xNN in a name: a byte that is not UTF-8; the name opens as shown]")
        return "\n".join(lines)

    async def read_file(self, args: dict[str, Any]) -> str:
        path = args.get("path", "")
        offset = int(args.get("offset") or 0)
        limit = None if args.get("limit") is None else int(args["limit"])
        if offset < 0 or (limit is not None and limit < 1):
            raise ToolError("offset must be >= 0 and limit >= 1")
        try:
            return await in_thread(lambda: self._read(path, offset, limit))
        except PermissionError:
            raise ToolError(f"permission denied: {path}") from None
        except OSError as exc:
            raise ToolError(f"cannot read {path}: {exc.strerror or exc}") from None

    def _read(self, path: str, offset: int, limit: int | None) -> str:
        """Only what is asked is read: a page of a huge file does not load the whole file."""
        stop_at = time.monotonic() + FILE_DEADLINE_S
        paged = bool(offset) or limit is not None
        with self.files.open_file(path) as opened, os.fdopen(os.dup(opened.fd), "rb") as fh:
            size = opened.stat.st_size
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
        with self.files.open(path, "searched") as base:
            return await search(self.root, base, pattern, self.search_deadline_s)

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
