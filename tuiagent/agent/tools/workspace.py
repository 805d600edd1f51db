"""The workspace sandbox and the file tools: list_dir, read_file, search_files.

Every path is resolved (symlinks followed) and must stay inside the workspace root; a path
that leads out (`..`, absolute, a symlink pointing outside) is refused and never read.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

from tuiagent.agent.tools.base import Tool, ToolError
from tuiagent.errors import UsageError

MAX_READ_BYTES = 2_000_000
MAX_SEARCH_MATCHES = 5_000
_SKIP_DIRS = {
    ".git",
    ".venv",
    "node_modules",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
}


class Workspace:
    def __init__(self, root: Path) -> None:
        if not root.exists():
            raise UsageError(f"workspace not found: {root}")
        if not root.is_dir():
            raise UsageError(f"workspace is not a directory: {root}")
        if not os.access(root, os.R_OK | os.X_OK):
            raise UsageError(f"workspace is not readable: {root}")
        self.root = root.resolve()

    def resolve(self, path: str) -> Path:
        """The real path of `path` inside the workspace, or ToolError."""
        if not isinstance(path, str) or not path:
            raise ToolError("path must be a non-empty string")
        if Path(path).is_absolute():
            raise ToolError(f"path {path!r} is absolute; use a path inside the workspace")
        target = (self.root / path).resolve()
        if target != self.root and self.root not in target.parents:
            raise ToolError(f"path {path!r} leads outside the workspace; refused")
        return target

    def relative(self, path: Path) -> str:
        rel = path.relative_to(self.root).as_posix()
        return rel or "."

    # --- tools -------------------------------------------------------------

    async def list_dir(self, args: dict[str, Any]) -> str:
        target = self.resolve(args.get("path") or ".")
        if not target.exists():
            raise ToolError(f"no such directory: {args.get('path')}")
        if not target.is_dir():
            raise ToolError(f"not a directory: {args.get('path')}")
        try:
            entries = sorted(target.iterdir(), key=lambda p: p.name)
        except PermissionError:
            raise ToolError(f"permission denied: {args.get('path')}") from None
        lines = [f"Directory {self.relative(target)} ({len(entries)} entries)"]
        for entry in entries:
            if entry.is_symlink():
                kind, size = "link", "-"
            elif entry.is_dir():
                kind, size = "dir", "-"
            else:
                kind, size = "file", f"{entry.stat().st_size:,}"
            suffix = "/" if kind == "dir" else ""
            lines.append(f"{kind:<4}  {size:>12}  {entry.name}{suffix}")
        return "\n".join(lines)

    async def read_file(self, args: dict[str, Any]) -> str:
        path = args.get("path", "")
        target = self.resolve(path)
        offset = int(args.get("offset") or 0)
        limit = args.get("limit")
        if offset < 0 or (limit is not None and int(limit) < 1):
            raise ToolError("offset must be >= 0 and limit >= 1")
        if not target.exists():
            raise ToolError(f"no such file: {path}")
        if target.is_dir():
            raise ToolError(f"{path} is a directory; use list_dir")
        try:
            return await asyncio.to_thread(self._read, target, path, offset, limit)
        except PermissionError:
            raise ToolError(f"permission denied: {path}") from None
        except OSError as exc:
            raise ToolError(f"cannot read {path}: {exc.strerror or exc}") from None

    def _read(self, target: Path, path: str, offset: int, limit: Any) -> str:
        """Only what is asked is read: a page of a huge file does not load the whole file."""
        with target.open("rb") as fh:
            start = fh.read(8192)
            if b"\x00" in start:
                size = target.stat().st_size
                raise ToolError(f"{path} is a binary file ({size:,} bytes); not shown")
            fh.seek(0)
            if offset or limit is not None:
                end = None if limit is None else offset + int(limit)
                chunks, size, truncated = [], 0, False
                for n, raw in enumerate(fh):
                    if end is not None and n >= end:
                        break
                    if n >= offset:
                        chunks.append(raw)
                        size += len(raw)
                        if size > MAX_READ_BYTES:
                            truncated = True
                            break
                data = b"".join(chunks)[:MAX_READ_BYTES]
            else:
                data = fh.read(MAX_READ_BYTES + 1)
                truncated = len(data) > MAX_READ_BYTES
                data = data[:MAX_READ_BYTES]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start >= len(data) - 3 and truncated:  # a character cut by the read limit
                text = data[: exc.start].decode("utf-8", errors="replace")
            else:
                text = data.decode("utf-8", errors="replace")
                text = (
                    f"[{path} is not valid UTF-8 (first bad byte at offset {exc.start:,}); "
                    "undecodable bytes are shown as \ufffd]\n" + text
                )
        if offset or limit is not None:
            text = "\n".join(text.splitlines())
        if truncated:
            text += f"\n[read stopped at {MAX_READ_BYTES:,} bytes; use offset/limit to page]"
        return text

    async def search_files(self, args: dict[str, Any]) -> str:
        pattern = args.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            raise ToolError("pattern must be a non-empty string")
        base = self.resolve(args.get("path") or ".")
        try:
            regex = re.compile(pattern)
        except re.error:
            regex = re.compile(re.escape(pattern))
        return await asyncio.to_thread(self._search, regex, base, pattern)

    def _search(self, regex: re.Pattern[str], base: Path, pattern: str) -> str:
        matches: list[str] = []
        files = 0
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if path.is_symlink() and self.root not in path.resolve().parents:
                    continue
                try:
                    with path.open("rb") as fh:
                        data = fh.read(MAX_READ_BYTES)
                except OSError:
                    continue
                if b"\x00" in data[:8192]:
                    continue
                hit = False
                for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
                    if regex.search(line):
                        hit = True
                        matches.append(f"{self.relative(path)}:{n}:{line.strip()[:200]}")
                        if len(matches) >= MAX_SEARCH_MATCHES:
                            break
                files += hit
                if len(matches) >= MAX_SEARCH_MATCHES:
                    break
        head = f"{len(matches)} matches for {pattern!r} in {files} files"
        if len(matches) >= MAX_SEARCH_MATCHES:
            head += f" (stopped at {MAX_SEARCH_MATCHES})"
        return "\n".join([head, *matches])

    def tools(self) -> list[Tool]:
        path_prop = {"type": "string", "description": "A path relative to the workspace root."}
        return [
            Tool(
                "list_dir",
                "List a directory of the workspace: each entry's kind, size in bytes and name.",
                {"type": "object", "properties": {"path": path_prop}, "required": []},
                self.list_dir,
            ),
            Tool(
                "read_file",
                "Read a text file of the workspace. offset and limit select lines (0-based).",
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
            ),
            Tool(
                "search_files",
                "Search the workspace's text files for a regular expression; one line per match "
                "as path:line:text.",
                {
                    "type": "object",
                    "properties": {"pattern": {"type": "string"}, "path": path_prop},
                    "required": ["pattern"],
                },
                self.search_files,
            ),
        ]
