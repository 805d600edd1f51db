"""What routing costs on huge or hostile input: a 1 MB prompt (prose with a question at the
end), a 60 KB base64url blob (one run of word characters), and a 1 MB run of one letter (once quadratic in the path and
code rules). Each figure is the best of 5 runs of Router.choose, which reads only the
request's head and tail (router.READ_SLICE_CHARS); the whole-request token count, which
the loop makes once per call and memoises, is not part of it.
"""

from __future__ import annotations

import base64
import random
import time
from decimal import Decimal

from tuiagent.agent.router import LastCallCacheView, Router
from tuiagent.config import DEFAULT_TIER_MODELS
from tuiagent.cost.pricing import Pricer

PROSE = "The service records payments and retries them when the bank is slow. "


def _prompts() -> dict[str, str]:
    blob = base64.urlsafe_b64encode(random.Random(12).randbytes(45_000)).decode()
    return {
        "1 MB prompt": PROSE * (1_000_000 // len(PROSE)) + "\nWhy does the retry loop stall?",
        "60 KB base64 blob": f"Decode this: {blob}",
        "1 MB of one letter": "a" * 1_000_000,
    }


def run() -> list[tuple[str, str, str]]:
    router = Router(DEFAULT_TIER_MODELS, Pricer())
    cache = LastCallCacheView()
    rows = []
    for name, prompt in _prompts().items():
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            decision = router.choose(
                prompt=prompt, input_tokens=250_000, cache=cache, now=0.0, cap=Decimal(100)
            )
            best = min(best, time.perf_counter() - start)
        rows.append((f"route a {name} ({decision.tier})", f"{best * 1000:.2f} ms", "< 10 ms"))
    return rows
