"""`tuiagent statusline`: one line for the coding agent's `statusLine` setting.

The coding agent runs the command every few hundred milliseconds with its session's JSON on
stdin. The line says what this session spent (and of which budget), what was spent today,
the session's cache hit rate, and, when the last call was costly, why. It is read from the
ledger (SQLite: every tuiagent process's holds, tagged with their session) and from the
proxy's run logs, with the standard library only: no SDK, no prices, no network, so that it
is well under 50 ms (`python -m bench bench_statusline`). Its start is most of that, so it
imports only what it uses (json, sqlite3, decimal): paths as text, no pathlib, no
dataclasses, no typing at run time, tomllib only when there is a config file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from decimal import Decimal, InvalidOperation

from tuiagent.paths import config_file_text, user_dir
from tuiagent.report.misses import MISS_WORDS
from tuiagent.terminal import printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

MAX_INPUT = 1 << 20  # the agent's JSON is a few hundred bytes
PICO = Decimal(10) ** -12  # the ledger keeps amounts in picodollars
TAIL_BYTES = 512 * 1024  # of a run log, for the latest calls' hit rate (about 300 calls)
RECENT_LOGS = 20  # without the ledger, the newest proxy run logs looked through


class BadInput(Exception):
    """The status JSON cannot be read: one line, exit 2."""


class Where:
    """Where the numbers are: the SQLite ledger (None: none, or not SQLite) and the logs."""

    def __init__(self, ledger: str | None, log_dir: str) -> None:
        self.ledger = ledger
        self.log_dir = log_dir


class SessionTotals:
    """What the session's records say."""

    def __init__(self) -> None:
        self.calls = 0
        self.cost = Decimal(0)
        self.input_tokens = 0  # every input token: uncached, cache write, cache read
        self.cache_read = 0
        self.simulated = False
        self.cap: Decimal | None = None  # the cap of the proxy run that served its last call
        self.partial = False  # only the latest calls were read (the tail of a long log)
        self.last: dict[str, Any] = {}


def read_input(stream: BinaryIO) -> str:
    """The session id in the status JSON on `stream`; BadInput naming what is wrong."""
    raw = stream.read(MAX_INPUT + 1)
    if len(raw) > MAX_INPUT:
        raise BadInput(f"the status JSON on stdin is over {MAX_INPUT:,} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadInput("stdin is not JSON (the coding agent pipes its status JSON)") from None
    if not isinstance(data, dict):
        raise BadInput(f"the status JSON is a {type(data).__name__}, not an object")
    session = data.get("session_id")
    if not isinstance(session, str) or not session.strip():
        raise BadInput("the status JSON has no session_id string")
    return session


def locate(log_dir: str | None = None) -> Where:
    """The ledger and the log dir, as the config says (`ledger_url`, `log_dir`): read here
    with tomllib, not the settings model (that import alone is slower than the goal). A
    config that cannot be read leaves the defaults: `tuiagent` itself says what is wrong."""
    config: dict[str, Any] = {}
    try:
        with open(config_file_text(), "rb") as fh:
            import tomllib  # only with a config to read

            config = tomllib.load(fh)
    except (OSError, ValueError):  # (TOMLDecodeError and UnicodeDecodeError are ValueErrors)
        pass
    url = config.get("ledger_url", "")
    data = user_dir("data")
    ledger: str | None = None
    if url == "":
        ledger = os.path.join(data, "ledger.sqlite3")
    elif isinstance(url, str) and url.startswith("sqlite:///"):
        ledger = os.path.expanduser(url.removeprefix("sqlite:///"))
    configured = config.get("log_dir")
    if log_dir is None:
        log_dir = os.path.expanduser(configured) if isinstance(configured, str) else None
    return Where(ledger, log_dir or os.path.join(data, "runs"))


def _money(value: object) -> Decimal:
    try:
        return Decimal(str(value)) if isinstance(value, int | float | str) else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


# An entry as spent (as the ledger's Entry.cost): its bill; open or expired: its worst case.
_SPENT = (
    "CASE state WHEN 'held' THEN amount WHEN 'expired' THEN max(amount, coalesce(actual, 0)) "
    "WHEN 'settled' THEN coalesce(actual, 0) ELSE 0 END"
)


class Ledgered:
    def __init__(
        self,
        session: Decimal,
        session_simulated: bool,
        today: Decimal,
        today_simulated: Decimal,
        runs: list[str],
        budget: tuple[str, Decimal] | None,
    ) -> None:
        self.session = session
        self.session_simulated = session_simulated
        self.today = today
        self.today_simulated = today_simulated
        self.runs = runs  # the runs that held for the session, latest last
        self.budget = budget  # the tightest session budget: (title, cap)


def from_ledger(path: str, session: str, since: float) -> Ledgered | None:
    """The session's and today's spending (`since`: the day's start, epoch seconds) and the
    session budgets the processes on the ledger hold against; None without a ledger."""
    if not os.path.isfile(path):
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.2)
    except sqlite3.Error:
        return None
    try:
        session_rows = conn.execute(
            f"SELECT sum({_SPENT}), max(simulated), run, max(at) FROM entries "
            "WHERE session = ? GROUP BY run ORDER BY max(at)",
            (session,),
        ).fetchall()
        day = dict(
            conn.execute(
                f"SELECT simulated, sum({_SPENT}) FROM entries WHERE at >= ? GROUP BY simulated",
                (since,),
            ).fetchall()
        )
        specs = conn.execute("SELECT spec FROM budgets").fetchall()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return Ledgered(
        Decimal(sum(int(r[0] or 0) for r in session_rows)) * PICO,
        any(r[1] for r in session_rows),
        Decimal(int(day.get(0) or 0)) * PICO,
        Decimal(int(day.get(1) or 0)) * PICO,
        [str(r[2]) for r in session_rows if r[2]],
        _session_budget([s for (s,) in specs], session),
    )


def _session_budget(specs: list[str], session: str) -> tuple[str, Decimal] | None:
    found = []
    for text in specs:
        try:
            spec = json.loads(text)
        except ValueError:
            continue
        if not isinstance(spec, dict) or spec.get("scope") != "session":
            continue
        if spec.get("match") not in (None, session):
            continue
        cap = _money(spec.get("max_cost_usd"))
        name = spec.get("name") or f"session {spec.get('window', '')}".strip()
        found.append((str(name), cap))
    return min(found, key=lambda b: b[1]) if found else None


def from_logs(
    log_dir: str, session: str, runs: list[str], tail: int | None = None
) -> SessionTotals:
    """The session's calls in the proxy's run logs: those of `runs` (from the ledger), else
    the newest RECENT_LOGS logs; of each, its last `tail` bytes (None: all of it). Only
    lines that name the session are parsed."""
    if runs:
        paths = [os.path.join(log_dir, f"{r}.jsonl") for r in runs]
    else:
        try:
            names = sorted(n for n in os.listdir(log_dir) if n.endswith(".jsonl"))
        except OSError:
            names = []
        paths = [os.path.join(log_dir, n) for n in names[-RECENT_LOGS:]]
    needle = json.dumps(session).encode()
    out = SessionTotals()
    for path in paths:
        try:
            with open(path, "rb") as fh:
                _read_start(out, fh.readline())
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - tail) if tail else 0)
                data = fh.read()
        except OSError:
            continue
        if tail and size > tail:
            data = data[data.find(b"\n") + 1 :]  # from the first whole line
            out.partial = True
        for line in data.split(b"\n"):
            if needle in line:
                _read_call(out, line, session)
    return out


def _read_start(out: SessionTotals, line: bytes) -> None:
    try:
        start = json.loads(line)
    except ValueError:
        return
    if isinstance(start, dict) and start.get("type") == "run_start":
        out.simulated = out.simulated or bool(start.get("simulated"))
        limits = start.get("limits")
        cap = limits.get("max_cost_usd") if isinstance(limits, dict) else None
        out.cap = _money(cap) if cap is not None else out.cap


def _read_call(out: SessionTotals, line: bytes, session: str) -> None:
    try:
        rec = json.loads(line)
    except ValueError:
        return
    if not isinstance(rec, dict) or rec.get("session") != session:
        return
    if rec.get("type") not in ("turn", "attempt", "refused"):
        return
    out.calls += 1
    out.cost += _money(rec.get("cost_usd"))
    if rec.get("cap_usd") is not None:  # the cap as this call settled (F2/F3 move it)
        out.cap = _money(rec["cap_usd"])
    tokens = [
        rec.get(k)
        for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    ]
    if all(isinstance(t, int) for t in tokens):
        out.input_tokens += sum(t for t in tokens if isinstance(t, int))
        out.cache_read += int(rec["cache_read_input_tokens"])
    out.last = rec


def cause_of(rec: dict[str, Any]) -> str:
    """Why a call cost what it did, in a few words ("" when nothing stands out)."""
    if rec.get("type") == "refused":
        return "refused"
    parts = []
    if rec.get("type") == "attempt":
        parts.append(f"failed ({rec.get('error_type') or 'error'})")
    miss = rec.get("cache_miss_reason")
    if isinstance(miss, str) and miss:
        parts.append(f"cache miss: {MISS_WORDS.get(miss, miss)}")
    if rec.get("lowered"):
        parts.append("max_tokens lowered to fit")
    return "; ".join(parts)


def _usd(amount: Decimal) -> str:
    return f"${amount:.2f}" if amount >= 1 else f"${amount:.4f}"


def line(session: str, where: Where, now: float | None = None) -> str:
    """The status line of `session`."""
    now = time.time() if now is None else now
    local = time.localtime(now)
    midnight = time.mktime((*local[:3], 0, 0, 0, 0, 0, -1))
    led = from_ledger(where.ledger, session, midnight) if where.ledger else None
    # With the ledger (exact spending), the hit rate is the latest calls' (the logs' tails).
    seen = from_logs(where.log_dir, session, led.runs[-2:], TAIL_BYTES) if led else None
    seen = seen or from_logs(where.log_dir, session, [])
    parts = ["tuiagent"]
    if not (led and led.runs) and not seen.calls:
        parts.append("no call of this session through the proxy yet")
    else:
        spent = led.session if led else seen.cost
        simulated = seen.simulated or (led.session_simulated if led else False)
        text = f"session {_usd(spent)}"
        if led and led.budget:
            title, cap = led.budget
            text += f" of {_usd(cap)} ({title})"
        elif seen.cap:
            text += f" (proxy cap {_usd(seen.cap)})"
        parts.append(text + (" simulated" if simulated else ""))
    if led is not None:
        today = f"today {_usd(led.today)}"
        if led.today_simulated:
            today += f" (+{_usd(led.today_simulated)} simulated)"
        parts.append(today)
    if seen.input_tokens:
        parts.append(f"cache {seen.cache_read / seen.input_tokens:.0%}")
    last = seen.last
    if last:
        cost = _money(last.get("cost_usd"))
        mean = seen.cost / seen.calls if seen.calls else Decimal(0)
        cause = cause_of(last)
        if cause and (last.get("type") == "refused" or cost >= mean):
            parts.append(f"last #{last.get('turn')} {_usd(cost)}: {cause}")
    text = " · ".join(parts)
    return printable(" ".join(text.split()))  # one line: no newline or tab from a record


def run(argv: list[str], stdin: BinaryIO | None = None) -> int:
    """`tuiagent statusline [--log-dir DIR]`: the line on stdout; bad input: one line on
    stderr, exit 2."""
    log_dir: str | None = None
    args = list(argv)
    if args[:1] == ["--log-dir"] and len(args) == 2:
        log_dir = args[1]
    elif len(args) == 1 and args[0].startswith("--log-dir="):
        log_dir = args[0].partition("=")[2]
    elif args:
        sys.stderr.write(f"tuiagent statusline: unexpected argument {printable(args[0])!r}\n")
        return 2
    try:
        session = read_input(stdin or sys.stdin.buffer)
    except BadInput as exc:
        sys.stderr.write(f"tuiagent statusline: {exc}\n")
        return 2
    sys.stdout.write(line(session, locate(log_dir)) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(run(sys.argv[1:]))
