"""The run's files on a full or failing disk: each record whole or not at all."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.loopback import LoopbackAPI
from tuiagent.runs import log as runlog
from tuiagent.runs.log import LogWriteError, RunLog, read_records
from tuiagent.runs.records import RunStart, UserMessage


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
    """Every line of the file (a log or a transcript) a whole JSON object."""
    data = path.read_bytes()
    try:
        return all(isinstance(json.loads(line), dict) for line in data.splitlines()) and (
            not data or data.endswith(b"\n")
        )
    except ValueError:
        return False


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


def test_what_a_full_disk_refused_is_written_once_space_returns(small_disk: Path) -> None:
    log = RunLog(small_disk, "r5")
    filler = fill(small_disk, leave=0)
    with pytest.raises(LogWriteError):
        log.append(UserMessage(text="billed while full"))
    filler.unlink()  # space returns
    log.append(UserMessage(text="next"))
    log.close()
    records, bad = read_records(log.path)
    assert bad == 0 and [r["text"] for r in records] == ["billed while full", "next"]
    assert log.unwritten == []


def test_a_short_write_is_carried_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    monkeypatch.setattr(runlog.os, "write", lambda fd, data: real_write(fd, data[:7]))
    log = RunLog(tmp_path, "r2")
    log.append(UserMessage(text="a record longer than seven bytes"))
    log.close()
    (record,), bad = read_records(log.path)
    assert bad == 0 and record["text"] == "a record longer than seven bytes"


def test_a_write_that_fails_half_way_is_cut_back_and_written_later(
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
    assert raised.value.errno == errno.EIO
    assert log.path.read_bytes().endswith(b'"kept","tokens":0}\n')  # nothing of it was left
    assert [r.text for r in log.unwritten] == ["lost whole"]  # type: ignore[attr-defined]
    log.append(UserMessage(text="after"))  # the disk takes it again: the kept one first
    log.close()
    records, bad = read_records(log.path)
    assert bad == 0 and [r["text"] for r in records] == ["kept", "lost whole", "after"]


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


PROMPT = "read notes.txt, then read README.md, then read data.csv, then list the files"


@pytest.mark.parametrize("leave", [0, 6_000, 20_000])
def test_a_run_on_a_disk_that_fills(
    small_disk: Path, workspace: Path, leave: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tuiagent run` with its log dir on a disk that fills: one line naming the directory, no
    traceback, every record whole, no call sent after the failure, and every call the
    server answered either in the log or in the summary on stderr."""
    log_dir = small_disk / "runs"
    log_dir.mkdir()
    (log_dir / "transcripts").mkdir()
    fill(small_disk, leave)
    with LoopbackAPI() as api:
        proc = run_cli(
            "run",
            PROMPT,
            "--workspace",
            str(workspace),
            "--log-dir",
            str(log_dir),
            env={"ANTHROPIC_API_KEY": "sk-ant-test-not-a-key", "ANTHROPIC_BASE_URL": api.base_url},
        )
        sent = api.messages_calls()
    assert "Traceback" not in proc.stderr + proc.stdout
    failures = [line for line in proc.stderr.splitlines() if "cannot write" in line]
    assert failures == [
        f"tuiagent: cannot write {name} in {where}: No space left on device"
        for name, where in [_failed_file(failures[0], log_dir)]
    ], proc.stderr
    assert proc.returncode == 1, proc.stderr
    logs = list(log_dir.glob("*.jsonl"))
    records = [r for log in logs for r in read_records(log)[0]]
    for path in [*logs, *log_dir.glob("transcripts/*.jsonl")]:
        assert lines_are_whole(path), path
    logged = [r for r in records if r["type"] in ("turn", "attempt")]
    summary = re.search(r"(\d+) of them billed calls \(\$([\d.]+)\)", proc.stderr)
    unlogged = int(summary.group(1)) if summary else 0
    assert len(logged) + unlogged == sent, (proc.stdout, proc.stderr)
    # A hold in the log with no call settling it is a call billed whose record the disk
    # refused (listed on stderr), never one that was not sent.
    settled = {r.get("hold_id") for r in logged}
    open_holds = [r for r in records if r["type"] == "hold" and r["hold_id"] not in settled]
    assert len(open_holds) == unlogged, (open_holds, proc.stderr)


def _failed_file(line: str, log_dir: Path) -> tuple[str, Path]:
    """The file and directory the failure line names (the log, or a transcript)."""
    found = re.search(r"cannot write (\S+) in (\S+):", line)
    assert found, line
    where = Path(found.group(2))
    assert where in (log_dir, log_dir / "transcripts"), line
    return found.group(1), where


def test_report_says_a_log_ends_in_a_torn_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tuiagent.cli.main import main

    log = RunLog(tmp_path, "20260101T000000Z-abcdef")
    log.append(RunStart(started_at="2026-01-01T00:00:00Z"))
    log.close()
    with log.path.open("ab") as fh:
        fh.write(b'{"type":"turn","turn":1,"cost_usd":0.0')  # the disk filled mid-record
    assert main(["report", "--log-dir", str(tmp_path), "--all"]) == 0
    shown = "".join(capsys.readouterr())
    assert "1 unreadable line(s) skipped (the last is a torn record" in shown
