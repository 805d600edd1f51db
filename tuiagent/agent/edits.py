"""Edits: `write_file` and `edit_file` (replace one exact, unique string), with a checkpoint
before each change and undo.

Only inside the workspace, opened without a race (agent/tools/beneath.py), and written
atomically (a temporary file beside the target, renamed over it). Each change asks first
(the app's dialog; headless, `--allow-edits` is the approval and without it the tools are
not offered). Before it is written, the file as it was goes to the run's checkpoints
(`transcripts/<run_id>/checkpoints.jsonl`): `undo` puts back the last change, or every
change of a run, newest first, and refuses a file changed since (it says which).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuiagent.agent.events import EventStream, awaited
from tuiagent.agent.tools import Tool, ToolError, ToolOutput
from tuiagent.agent.tools.base import in_thread
from tuiagent.agent.tools.beneath import Beneath

MAX_EDIT_BYTES = 2_000_000  # a file larger than this is not edited (nor written)
CHECKPOINTS = "checkpoints.jsonl"


def checkpoints_file(transcript: Path) -> Path:
    """Where a run's checkpoints are: `transcripts/<run_id>/checkpoints.jsonl`."""
    return transcript.parent / transcript.stem / CHECKPOINTS


def _sha(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


def diff_of(path: str, before: str | None, after: str | None) -> str:
    """A unified diff of a change (a new file: every line added; removed: every line gone)."""
    return "".join(
        difflib.unified_diff(
            (before or "").splitlines(keepends=True),
            (after or "").splitlines(keepends=True),
            f"a/{path}" if before is not None else "/dev/null",
            f"b/{path}" if after is not None else "/dev/null",
        )
    )


def diff_size(diff: str) -> int:
    """Lines added plus lines removed."""
    return sum(
        1 for ln in diff.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))
    )


@dataclass(frozen=True)
class Change:
    """One change as its checkpoint keeps it: the file before (None: it did not exist) and
    a hash of what was written."""

    n: int
    path: str
    before: str | None
    after_sha: str | None
    root: str = ""  # the workspace it was made in

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "root": self.root,
            "path": self.path,
            "before": self.before,
            "after_sha": self.after_sha,
        }


def read_changes(path: Path) -> list[Change]:
    """The checkpoints of a run, in order (undone ones removed: an `undo` line names one)."""
    changes: dict[int, Change] = {}
    if not path.is_file():
        return []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut by a killed run
        if "undo" in rec:
            changes.pop(int(rec["undo"]), None)
        elif isinstance(rec.get("path"), str):
            changes[int(rec["n"])] = Change(
                int(rec["n"]),
                rec["path"],
                rec.get("before"),
                rec.get("after_sha"),
                str(rec.get("root") or ""),
            )
    return [changes[n] for n in sorted(changes)]


def _write_all(fd: int, text: str) -> None:
    view = memoryview(text.encode())
    while view:
        view = view[os.write(fd, view) :]


def undo_run(transcript: Path, every: bool) -> list[str]:
    """`tuiagent undo RUN`: put back the run's last change (or all of them) in the
    workspace each was made in."""
    from tuiagent.errors import UsageError

    changes = read_changes(checkpoints_file(transcript))
    if not changes:
        raise UsageError(f"run {transcript.stem} has no change to undo")
    root = Path(changes[-1].root)
    if not root.is_dir():
        raise UsageError(f"the workspace of run {transcript.stem} is gone: {root}")
    files = Beneath(root)
    try:
        return Editor(files, checkpoints_file(transcript)).undo(every)
    except ToolError as exc:
        raise UsageError(str(exc)) from None
    finally:
        files.close()


@dataclass(frozen=True)
class EditPreview:
    """What an edit would do, for the approval dialog: the file before (None: it does not
    exist yet) and after."""

    path: str
    before: str | None
    after: str


class Editor:
    """The edit tools of one run, and its checkpoints."""

    def __init__(self, files: Beneath, checkpoints: Path) -> None:
        self.files = files
        self.checkpoints = checkpoints
        self._n = max((c.n for c in read_changes(checkpoints)), default=0)

    # --- files -------------------------------------------------------------------------

    def _current(self, path: str) -> str | None:
        """The file's text, or None when there is none."""
        try:
            opened = self.files.open_file(path)
        except ToolError as exc:
            if "no such file" in str(exc):
                return None
            raise
        with opened, os.fdopen(os.dup(opened.fd), "rb") as fh:
            data = fh.read(MAX_EDIT_BYTES + 1)
        if len(data) > MAX_EDIT_BYTES:
            raise ToolError(f"{path} is larger than {MAX_EDIT_BYTES:,} bytes; not edited")
        if b"\x00" in data:
            raise ToolError(f"{path} is a binary file; not edited")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError(f"{path} is not UTF-8 text; not edited") from None

    def _write(self, path: str, text: str | None) -> None:
        """Put `text` at `path` atomically (None: remove the file)."""
        if text is None:
            with self.files.open_new(path) as new:  # the directory, opened beneath the root
                os.unlink(new._name, dir_fd=new._dir_fd)
            return
        with self.files.open_new(path) as new:
            _write_all(new.fd, text)
            new.commit()

    def _checkpoint(self, path: str, before: str | None, after: str) -> Change:
        self._n += 1
        change = Change(self._n, path, before, _sha(after), str(self.files.root))
        self.checkpoints.parent.mkdir(parents=True, exist_ok=True)
        with self.checkpoints.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(change.to_json()) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return change

    def change(self, path: str, after: str) -> tuple[str, int]:
        """Write `after` at `path` with a checkpoint first: (the diff, its size)."""
        if len(after.encode()) > MAX_EDIT_BYTES:
            raise ToolError(f"the new text is larger than {MAX_EDIT_BYTES:,} bytes")
        before = self._current(path)
        diff = diff_of(path, before, after)
        if before == after:
            return "", 0
        with self.files.open_new(path) as new:  # where it goes, opened before the checkpoint
            self._checkpoint(path, before, after)
            _write_all(new.fd, after)
            new.commit()
        return diff, diff_size(diff)

    # --- undo --------------------------------------------------------------------------

    def undo(self, every: bool = False) -> list[str]:
        """Put back the last change (or every change, newest first): one line each."""
        said = []
        for change in reversed(read_changes(self.checkpoints)):
            now = self._current(change.path)
            if _sha(now) != change.after_sha:
                raise ToolError(
                    f"{change.path} changed since change {change.n}; not undone (undo it by hand)"
                )
            self._write(change.path, change.before)
            with self.checkpoints.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"undo": change.n}) + "\n")
            what = "removed" if change.before is None else "restored"
            said.append(f"undid change {change.n}: {change.path} {what}")
            if not every:
                break
        if not said:
            raise ToolError("nothing to undo")
        return said

    # --- the tools ---------------------------------------------------------------------

    def tools(self) -> list[Tool]:
        path = {"type": "string", "description": "A path relative to the workspace root."}

        def tool(name: str, description: str, properties: dict[str, Any]) -> Tool:
            def stream(args: dict[str, Any]) -> EventStream[ToolOutput]:
                return awaited(lambda: in_thread(lambda: self.apply(name, args)))

            async def run(args: dict[str, Any]) -> str:
                return (await in_thread(lambda: self.apply(name, args))).text

            schema = {"type": "object", "properties": properties, "required": list(properties)}
            return Tool(name, description, schema, run, needs_approval=True, stream=stream)

        kept = "The user approves each change; a checkpoint is kept so it can be undone."
        return [
            tool(
                "write_file",
                f"Write a text file of the workspace (created, or replaced whole). {kept}",
                {"path": path, "content": {"type": "string"}},
            ),
            tool(
                "edit_file",
                "Replace one exact string in a text file of the workspace: old_string must "
                f"occur exactly once (include enough context to make it unique). {kept}",
                {
                    "path": path,
                    "old_string": {"type": "string"},
                    "new_string": {"type": "string"},
                },
            ),
        ]

    def preview(self, name: str, args: dict[str, Any]) -> EditPreview:
        """What a call would do (ToolError when it cannot: the call will fail the same)."""
        path = str(args.get("path") or "")
        before = self._current(path)
        return EditPreview(path, before, self._after(name, path, before, args))

    def _after(self, name: str, path: str, before: str | None, args: dict[str, Any]) -> str:
        if name == "write_file":
            content = args.get("content")
            if not isinstance(content, str):
                raise ToolError("content must be a string")
            return content
        old, new = args.get("old_string"), args.get("new_string")
        if not isinstance(old, str) or not old or not isinstance(new, str):
            raise ToolError("old_string (not empty) and new_string must be strings")
        if before is None:
            raise ToolError(f"no such file: {path}")
        count = before.count(old)
        if count != 1:
            where = "does not occur" if count == 0 else f"occurs {count} times"
            raise ToolError(f"old_string {where} in {path}; it must occur exactly once")
        return before.replace(old, new, 1)

    def apply(self, name: str, args: dict[str, Any]) -> ToolOutput:
        """Make the change a write_file or edit_file call asks for: its result."""
        path = args.get("path")
        try:
            if not isinstance(path, str) or not path:
                raise ToolError("path must be a non-empty string")
            diff, size = self.change(path, self._after(name, path, self._current(path), args))
        except ToolError as exc:
            return ToolOutput(f"error: {exc}", is_error=True)
        except OSError as exc:
            return ToolOutput(f"error: cannot write {path}: {exc.strerror or exc}", is_error=True)
        if not size:
            return ToolOutput(f"{path} unchanged (the text was already so)")
        verb = "wrote" if name == "write_file" else "edited"
        lines = "1 line" if size == 1 else f"{size} lines"
        text = f"{verb} {path} ({lines} changed; undo puts it back)\n{diff}"
        return DiffOutput(text, diff_lines=size)


@dataclass(frozen=True)
class DiffOutput(ToolOutput):
    """A tool output that changed a file: its diff's size goes into the `tool` record."""

    diff_lines: int = 0
