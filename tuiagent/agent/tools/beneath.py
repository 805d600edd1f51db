"""Files of the workspace opened without a race: the check and the open are one step.

A path is walked one name at a time from a descriptor of the workspace root, each name
opened relative to the directory before it (`openat`) with O_NOFOLLOW. A symlink is never
followed by the kernel: it is read (`readlinkat`) and its target walked the same way, so a
link, or a name swapped for a link while the walk goes on, can lead nowhere but inside; `..`
goes back along the walk itself and never above the root; an absolute target must name a
place under the root. The file is opened last, by name in the directory already opened, and
what was opened is what is checked (`fstat`): its kind, and that it is the file the walk
found. So a swap between the check and the open reads nothing outside.

`Beneath.open_file` (a regular file, to read), `Beneath.open_dir` (to list, or to search
from) and `Beneath.open_new` (a temporary file beside the target, renamed over it on commit:
an atomic write, for the editing tools to come) are the whole interface; `open` takes a
file or a directory, whichever is there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tuiagent.agent.tools.base import ToolError, as_utf8

MAX_LINKS = 40  # as the kernel's own limit: more is a loop
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: were a FIFO swapped in, the open could not block (and it is refused after).
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_ESCAPED_BYTE = re.compile(r"\\x([89a-fA-F][0-9a-fA-F])")

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


def _unshown(name: str) -> str:
    """The name `as_utf8` showed as `name`: each `\\xNN` of a byte >= 0x80 back to it."""
    return _ESCAPED_BYTE.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), name)


@dataclass
class Opened:
    """A file or directory of the workspace, open: its descriptor, its real path inside the
    workspace (`.` for the root) and what `fstat` says of it. Close it, or use `with`."""

    fd: int
    path: str
    stat: os.stat_result

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Opened:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class NewFile:
    """A file being written in place of `path`: a temporary file in the same directory,
    renamed over the name by `commit` (readers see the old file or the new, never half).
    Leaving the `with` without commit removes it."""

    fd: int
    path: str
    _dir_fd: int
    _name: str
    _temp: str
    _done: bool = field(default=False)

    def commit(self) -> None:
        os.fsync(self.fd)
        os.rename(self._temp, self._name, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
        self._done = True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if not self._done:
            with contextlib.suppress(OSError):
                os.unlink(self._temp, dir_fd=self._dir_fd)
            self._done = True
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1

    def __enter__(self) -> NewFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Walk:
    """Where a walk stands: the directories opened from the root, by name."""

    def __init__(self, root_fd: int) -> None:
        self.fds = [os.dup(root_fd)]
        self.names: list[str] = []

    @property
    def fd(self) -> int:
        return self.fds[-1]

    def enter(self, fd: int, name: str) -> None:
        self.fds.append(fd)
        self.names.append(name)

    def up(self) -> bool:
        if len(self.fds) == 1:
            return False
        os.close(self.fds.pop())
        self.names.pop()
        return True

    def to_root(self) -> None:
        while self.up():
            pass

    def path(self, name: str | None = None) -> str:
        names = [*self.names, name] if name else self.names
        return "/".join(as_utf8(n) for n in names) or "."

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


class Beneath:
    """Opens paths beneath one root directory, never outside it (see the module's text)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.fd = os.open(self.root, _DIR_FLAGS)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # --- the interface -----------------------------------------------------------------

    def open(self, path: str, verb: str = "read") -> Opened:
        """The regular file or directory at `path`, open. Anything else is refused by its
        kind, never opened (a FIFO, a device, a socket): "only regular files are {verb}"."""
        with self._last(path) as (walk, name, found):
            if name is not None and not (
                stat.S_ISDIR(found.st_mode) or stat.S_ISREG(found.st_mode)
            ):
                words = kind_of(found.st_mode)[1]
                raise ToolError(f"{path} is {words}; only regular files are {verb}")
            return self._opened(walk, name, found, path)

    def open_file(self, path: str) -> Opened:
        """The regular file at `path`, open for reading."""
        opened = self.open(path)
        if stat.S_ISDIR(opened.stat.st_mode):
            opened.close()
            raise ToolError(f"{path} is a directory; use list_dir")
        return opened

    def open_dir(self, path: str) -> Opened:
        """The directory at `path`, open (to list, or to search from)."""
        with self._last(path) as (walk, name, found):
            if name is not None and not stat.S_ISDIR(found.st_mode):
                raise ToolError(f"not a directory: {path} is {kind_of(found.st_mode)[1]}")
            return self._opened(walk, name, found, path)

    def open_new(self, path: str) -> NewFile:
        """A new file to take the place of `path` (which need not exist) once committed. The
        directory must exist inside the workspace; a symlink at `path` is replaced, not
        followed."""
        *parents, last = _parts(path)
        if last in (".", ".."):
            raise ToolError(f"path {path!r} names a directory, not a file")
        folder = self.open_dir("/".join(parents) or ".")
        name = _unshown(last)
        temp = f".{name[:200]}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(temp, _NEW_FLAGS, 0o644, dir_fd=folder.fd)
        except OSError:
            folder.close()
            raise
        where = last if folder.path == "." else f"{folder.path}/{last}"
        return NewFile(fd, where, folder.fd, name, temp)

    # --- the walk ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _last(self, path: str) -> Iterator[tuple[_Walk, str | None, os.stat_result]]:
        """Walk `path` to its last name: yields (the walk, that name in the walk's directory,
        its lstat), or (the walk, None, the directory's stat) when the path ends on a
        directory the walk opened itself. Symlinks on the way are read and walked."""
        parts = _parts(path)
        walk = _Walk(self.fd)
        try:
            yield self._walk(walk, parts, path)
        finally:
            walk.close()

    def _walk(
        self, walk: _Walk, todo: list[str], path: str
    ) -> tuple[_Walk, str | None, os.stat_result]:
        links = 0
        while todo:
            name = todo.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                if not walk.up():
                    raise ToolError(f"path {path!r} leads outside the workspace; refused")
                continue
            found, name = self._lstat(walk.fd, name, path)
            if stat.S_ISLNK(found.st_mode):
                links += 1
                if links > MAX_LINKS:
                    raise ToolError(f"path {path!r} is a symlink loop; refused")
                target = os.readlink(name, dir_fd=walk.fd)
                if target.startswith("/"):
                    target = self._inside(target, path)
                    walk.to_root()
                todo[:0] = target.split("/")
                continue
            if not todo or all(n in ("", ".") for n in todo):
                return walk, name, found
            if not stat.S_ISDIR(found.st_mode):
                raise ToolError(f"no such file or directory: {path}")
            walk.enter(self._reopen(walk.fd, name, _DIR_FLAGS, found, path), name)
        return walk, None, os.fstat(walk.fd)

    def _opened(self, walk: _Walk, name: str | None, found: os.stat_result, path: str) -> Opened:
        """What the walk found, open: `name` in the walk's directory (a file or a folder,
        checked to be what was found), or, with no name, the directory it ended on."""
        if name is None:
            return Opened(os.dup(walk.fd), walk.path(), found)
        flags = _DIR_FLAGS if stat.S_ISDIR(found.st_mode) else _FILE_FLAGS
        fd = self._reopen(walk.fd, name, flags, found, path)
        return Opened(fd, walk.path(name), os.fstat(fd))

    def _inside(self, target: str, path: str) -> str:
        """An absolute link target as a path under the root, or refused."""
        root = str(self.root)
        if target == root or target.startswith(root.rstrip("/") + "/"):
            return target[len(root) :].lstrip("/") or "."
        raise ToolError(f"path {path!r} leads outside the workspace; refused")

    @staticmethod
    def _lstat(dir_fd: int, name: str, path: str) -> tuple[os.stat_result, str]:
        """The lstat of `name` in the directory (by its `\\xNN` spelling too), and the name."""
        for candidate in dict.fromkeys((name, _unshown(name))):
            try:
                return os.stat(candidate, dir_fd=dir_fd, follow_symlinks=False), candidate
            except FileNotFoundError:
                continue
            except PermissionError:
                raise ToolError(f"permission denied: {path}") from None
            except OSError as exc:
                raise ToolError(f"cannot open {path}: {exc.strerror or exc}") from None
        raise ToolError(f"no such file or directory: {path}")

    @staticmethod
    def _reopen(dir_fd: int, name: str, flags: int, found: os.stat_result, path: str) -> int:
        """`name` opened as found: were it swapped meanwhile (for a link, another file),
        what was opened is not what was checked, and it is refused."""
        try:
            fd = os.open(name, flags, dir_fd=dir_fd)
        except PermissionError:
            raise ToolError(f"permission denied: {path}") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT, errno.ENXIO):
                raise ToolError(f"{path} changed while it was opened; refused") from None
            raise ToolError(f"cannot open {path}: {exc.strerror or exc}") from None
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (found.st_dev, found.st_ino):
            os.close(fd)
            raise ToolError(f"{path} changed while it was opened; refused")
        return fd


def _parts(path: object) -> list[str]:
    if not isinstance(path, str) or not path:
        raise ToolError("path must be a non-empty string")
    if path.startswith("/"):
        raise ToolError(f"path {path!r} is absolute; use a path inside the workspace")
    if "\0" in path:
        raise ToolError("path must not contain a NUL character")
    return path.split("/")
