"""The proxy's end and its disk (issue 23, item 2): SIGHUP and SIGTERM end it like Ctrl-C,
with every call in flight recorded and `run_end` written; a log it cannot write (a full
disk) makes it refuse new requests while it settles what is in flight, and it recovers
when room is made. Nothing billed goes unrecorded."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.support.loopback import Fault, LoopbackAPI
from tests.support.proxy_harness import KEY, MODEL, HeadlessProxy

PROMPT = [{"role": "user", "content": "hello there, who are you?"}]


def streamed(client: anthropic.Anthropic, messages: list[dict[str, Any]] = PROMPT) -> None:
    """One streamed call, read to its end (the loopback's `slow` fault paces a stream)."""
    with client.messages.stream(model=MODEL, max_tokens=60, messages=messages) as stream:
        stream.until_done()


def calls(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] in ("turn", "attempt")]


def _call_until_refused(url: str, failures: list[BaseException], stop: threading.Event) -> None:
    client = anthropic.Anthropic(api_key=KEY, base_url=url, max_retries=0)
    while not stop.is_set():
        try:
            streamed(client)
        except anthropic.APIError as exc:  # the proxy stopped: refused, cut, or gone
            failures.append(exc)
            return


@pytest.mark.parametrize(
    ("sig", "status"),
    [(signal.SIGHUP, 129), (signal.SIGTERM, 143), (signal.SIGINT, 130)],
)
def test_a_stop_signal_under_load_records_every_call_and_ends_the_run(
    tmp_path: Path, sig: int, status: int
) -> None:
    # Each answer streams for ~0.3 s, so that calls are in flight when the signal comes.
    api = LoopbackAPI(faults=[Fault("slow", delay_s=0.01) for _ in range(400)])
    with api, contextlib.ExitStack() as stack:
        proxy = stack.enter_context(HeadlessProxy(api.base_url, tmp_path))
        failures: list[BaseException] = []
        stop = threading.Event()
        clients = [
            threading.Thread(target=_call_until_refused, args=(proxy.url, failures, stop))
            for _ in range(8)
        ]
        for t in clients:
            t.start()
        while api.messages_calls() < 16:  # a second round of calls is in flight
            time.sleep(0.05)
        code, _, err = proxy.stop(sig)
        stop.set()
        for t in clients:
            t.join(timeout=30)
        sent = api.messages_calls()
    records = proxy.records()
    assert code == status, err
    assert "Traceback" not in err
    assert records[0]["type"] == "run_start" and records[-1]["type"] == "run_end"
    # Every request the upstream saw is exactly one record, and what it billed is counted.
    assert len(calls(records)) == sent
    assert len({r["turn"] for r in calls(records)}) == sent
    total = sum(float(r["cost_usd"]) for r in calls(records))
    assert records[-1]["total_cost_usd"] == pytest.approx(total)
    assert records[-1]["in_flight_usd"] == 0


def test_a_stream_longer_than_the_grace_is_cut_and_settled_at_what_it_may_have_billed(
    tmp_path: Path,
) -> None:
    api = LoopbackAPI(faults=[Fault("slow", delay_s=1.0)])  # ~10 s: past the 5 s grace
    with api, contextlib.ExitStack() as stack:
        proxy = stack.enter_context(HeadlessProxy(api.base_url, tmp_path))
        got: list[BaseException] = []

        def call() -> None:
            try:
                streamed(proxy.client())
            except anthropic.APIError as exc:
                got.append(exc)

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(1.5)
        code, _, err = proxy.stop(signal.SIGTERM)
        caller.join(timeout=30)
    records = proxy.records()
    (attempt,) = calls(records)
    assert code == 143 and "Traceback" not in err
    assert attempt["type"] == "attempt" and attempt["input_tokens"] > 0
    # The record says why it ended early (it said "connection dropped").
    assert attempt["error"] == "cut when the proxy stopped, before the answer ended"
    assert records[-1]["type"] == "run_end" and records[-1]["in_flight_usd"] == 0
    assert float(records[-1]["total_cost_usd"]) == pytest.approx(float(attempt["cost_usd"]))
    assert float(attempt["cost_usd"]) > 0


def test_a_second_signal_while_it_stops_cuts_at_once_and_still_records_all(
    tmp_path: Path,
) -> None:
    api = LoopbackAPI(faults=[Fault("slow", delay_s=1.0)])  # ~10 s: past the 5 s grace
    with api, contextlib.ExitStack() as stack:
        proxy = stack.enter_context(HeadlessProxy(api.base_url, tmp_path))
        caller = threading.Thread(target=lambda: _ignore_errors(streamed, proxy.client()))
        caller.start()
        time.sleep(1.5)
        proxy.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        code, _, err = proxy.stop(signal.SIGHUP)  # the terminal closes while it stops
        caller.join(timeout=30)
    records = proxy.records()
    assert code == 143 and "Traceback" not in err  # the first signal's status
    assert [r["type"] for r in records][-2:] == ["attempt", "run_end"]
    assert records[-1]["in_flight_usd"] == 0


def _ignore_errors(call: Any, *args: Any) -> None:
    with contextlib.suppress(anthropic.APIError):
        call(*args)


# --- a log it cannot write --------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (mounting needs root, as CI runs)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of the disk."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"x" * 512)
        except OSError:
            pass
    return filler


def test_a_full_disk_refuses_new_requests_settles_those_in_flight_and_recovers(
    small_disk: Path,
) -> None:
    slow = [Fault("slow", delay_s=0.1) for _ in range(4)]
    with (
        LoopbackAPI(faults=[Fault("slow", delay_s=0.0), *slow]) as api,
        contextlib.ExitStack() as stack,
    ):
        proxy = stack.enter_context(HeadlessProxy(api.base_url, small_disk))
        client = proxy.client()
        streamed(client)
        in_flight = [
            threading.Thread(target=streamed, args=(client, PROMPT * 20)) for _ in range(4)
        ]
        for t in in_flight:
            t.start()
        time.sleep(0.3)  # admitted and streaming
        filler = fill(small_disk)
        for t in in_flight:
            t.join(timeout=30)
        sent_while_full = api.messages_calls()
        with pytest.raises(anthropic.APIStatusError) as refused:
            streamed(client)
        assert api.messages_calls() == sent_while_full  # nothing more went upstream
        filler.unlink()
        streamed(client)
        sent = api.messages_calls()
        code, _, err = proxy.stop()
    records = proxy.records()
    assert refused.value.status_code == 400
    assert "cannot write" in str(refused.value) and "No space left on device" in str(refused.value)
    assert "refusing new requests" in err and "can be written again" in err
    assert code == 130 and "Traceback" not in err
    # Every billed call is recorded, once; the refusal made while the disk was full too.
    assert len(calls(records)) == sent == 6
    ends = ("turn", "attempt", "refused")
    assert sorted(r["turn"] for r in records if r["type"] in ends) == list(range(1, 8))
    assert len([r for r in records if r["type"] == "hold"]) == 6  # each sent call's hold
    assert [r["type"] for r in records].count("refused") == 1
    assert records[-1]["type"] == "run_end" and records[-1]["in_flight_usd"] == 0


def test_records_it_never_could_write_are_printed_whole_when_it_stops(small_disk: Path) -> None:
    # Eight records (~1.5 KB each) need more than the page the log has begun: some fail.
    faults = [Fault("slow", delay_s=0.1) for _ in range(8)]
    with LoopbackAPI(faults=faults) as api, contextlib.ExitStack() as stack:
        proxy = stack.enter_context(HeadlessProxy(api.base_url, small_disk))
        client = proxy.client()
        threads = [threading.Thread(target=streamed, args=(client, PROMPT * 20)) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        fill(small_disk)
        for t in threads:
            t.join(timeout=30)
        sent = api.messages_calls()
        code, _, err = proxy.stop()
    written = calls(proxy.records())
    printed = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert code == 130 and "could not be written" in err
    # What the disk has and what was printed: every call the upstream saw, once.
    assert sorted(r["turn"] for r in written + calls(printed)) == list(range(1, sent + 1))
    assert printed[-1]["type"] == "run_end"
    assert KEY not in err
