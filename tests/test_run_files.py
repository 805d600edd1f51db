"""The run's files on a full or failing disk: each record whole or not at all."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tuiagent.runs import log as runlog
from tuiagent.runs.log import LogWriteError, RunLog, read_records
from tuiagent.runs.records import UserMessage


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KB tmpfs (root only; skipped where mounting is not allowed)."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill the disk but for about `leave` bytes."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"x" * 4096):
            pass
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def lines_are_whole(path: Path) -> bool:
    data = path.read_bytes()
    return read_records(path)[1] == 0 and (not data or data.endswith(b"\n"))


def test_a_full_disk_raises_and_leaves_no_torn_record(small_disk: Path) -> None:
    log = RunLog(small_disk / "runs", "r1")
    log.append(UserMessage(text="first"))
    fill(small_disk, leave=6000)
    written = 1
    with pytest.raises(LogWriteError) as raised:
        for _ in range(100):
            log.append(UserMessage(text="y" * 1500))  # the last one cannot fit whole
            written += 1
    log.close()
    assert raised.value.errno == errno.ENOSPC
    assert isinstance(raised.value, OSError)
    assert str(raised.value) == f"cannot write r1.jsonl in {small_disk / 'runs'}: " + os.strerror(
        errno.ENOSPC
    )
    assert lines_are_whole(log.path)
    records, _ = read_records(log.path)
    assert len(records) == written


def test_a_short_write_is_carried_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    monkeypatch.setattr(runlog.os, "write", lambda fd, data: real_write(fd, data[:7]))
    log = RunLog(tmp_path, "r2")
    log.append(UserMessage(text="a record longer than seven bytes"))
    log.close()
    (record,), bad = read_records(log.path)
    assert bad == 0 and record["text"] == "a record longer than seven bytes"


def test_a_write_that_fails_half_way_is_cut_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = RunLog(tmp_path, "r3")
    log.append(UserMessage(text="kept"))
    real_write = os.write
    calls = []

    def half_then_eio(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, data[:10])
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(runlog.os, "write", half_then_eio)
    with pytest.raises(LogWriteError) as raised:
        log.append(UserMessage(text="lost whole"))
    monkeypatch.undo()
    log.append(UserMessage(text="after"))
    log.close()
    assert raised.value.errno == errno.EIO
    records, bad = read_records(log.path)
    assert bad == 0 and [r["text"] for r in records] == ["kept", "after"]


def test_a_torn_tail_is_cut_at_the_next_open(tmp_path: Path) -> None:
    log = RunLog(tmp_path, "r4")
    log.append(UserMessage(text="whole"))
    log.close()
    with log.path.open("ab") as fh:
        fh.write(b'{"type":"user","text":"to')  # a kill mid-write
    assert read_records(log.path)[1] == 1
    again = RunLog(tmp_path, "r4")
    assert again.cut_bytes == len(b'{"type":"user","text":"to')
    again.append(UserMessage(text="resumed"))
    again.close()
    records, bad = read_records(log.path)
    assert bad == 0 and [r["text"] for r in records] == ["whole", "resumed"]
