"""The fixed set of large tool results that the compression tests and benchmark share.

Deterministic (seeded), built to look like what agents really read: an API response, a
service log, a source file (the standard library's own code), a wide code search.
"""

from __future__ import annotations

import json
import random
import sysconfig
from pathlib import Path

from tuiagent.agent.tools import Workspace

JSON_ITEMS = 190
LOG_ERRORS_MESSAGE = "failed: database is locked"


def json_api_response() -> str:
    """About 50 KB: a page of an inventory API, pretty-printed as APIs send it."""
    rng = random.Random(5)
    items = [
        {
            "id": 1000 + i,
            "sku": f"WID-{rng.randrange(16**6):06X}",
            "name": f"Widget {i} {rng.choice(['mini', 'pro', 'max', 'eco'])}",
            "price": round(rng.uniform(1, 500), 2),
            "in_stock": rng.random() < 0.7,
            "tags": rng.sample(["new", "sale", "eco", "gift", "bulk"], 2),
            "warehouse": {"id": rng.randrange(1, 9), "region": rng.choice(["eu", "us", "ap"])},
        }
        for i in range(JSON_ITEMS)
    ]
    doc = {
        "data": items,
        "meta": {"total": JSON_ITEMS, "page": 1, "per_page": JSON_ITEMS, "currency": "USD"},
        "links": {"self": "https://api.example.com/v2/widgets?page=1", "next": None},
    }
    return json.dumps(doc, indent=2)


def service_log(lines: int = 5000) -> str:
    """A worker log: mostly routine lines, some warnings, a few errors."""
    rng = random.Random(7)
    out = []
    for i in range(lines):
        t = f"2024-05-01 12:{(i // 60) % 60:02d}:{i % 60:02d},{i % 1000:03d}"
        r = rng.random()
        worker = f"worker-{rng.randint(1, 4)}"
        if r < 0.85:
            out.append(
                f"{t} INFO {worker} processed job {rng.randint(1000, 99999)} "
                f"in {rng.randint(2, 900)}ms"
            )
        elif r < 0.98:
            out.append(f"{t} WARNING {worker} queue depth {rng.randint(100, 999)}")
        else:
            out.append(f"{t} ERROR {worker} job {rng.randint(1000, 99999)} {LOG_ERRORS_MESSAGE}")
    return "\n".join(out) + "\n"


def source_file(lines: int = 3000) -> str:
    """Real Python: the standard library's typing.py (then argparse.py), first `lines` lines."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    text: list[str] = []
    for name in ("typing.py", "argparse.py", "inspect.py"):
        text.extend((stdlib / name).read_text(encoding="utf-8").splitlines())
        if len(text) >= lines:
            break
    return "\n".join(text[:lines]) + "\n"


def make_search_workspace(root: Path, matches: int = 2000, files: int = 120) -> Workspace:
    """A workspace whose files hold `matches` TODO lines in all, spread over `files` files."""
    rng = random.Random(11)
    counts = [matches // files] * files
    for i in range(matches - sum(counts)):
        counts[i] += 1
    for f, count in enumerate(counts):
        folder = root / f"pkg{f % 12}"
        folder.mkdir(parents=True, exist_ok=True)
        body = []
        for n in range(count):
            body.append(f"def handler_{n}(request):")
            body.append(f"    # TODO: validate {rng.choice(['input', 'auth', 'limits'])} ({n})")
            body.append("    return None")
        (folder / f"module_{f}.py").write_text("\n".join(body) + "\n")
    return Workspace(root)


async def search_result(root: Path) -> str:
    """The real search_files output over a 2,000-match workspace."""
    workspace = make_search_workspace(root)
    return await workspace.search_files({"pattern": "TODO"})
