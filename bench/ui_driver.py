"""The app with a long-winded offline model, for the UI benchmarks (run in tmux or headless).

`python -m bench.ui_driver WORKSPACE LOG_DIR --tokens N --tps R [--prefill M] [--pid-file F]`
(`--code LINES`: the answer is a Python fence of that many lines; `--whole-fences`: a fence
is drawn whole at every frame, as before it streamed in pieces.)
"""

from __future__ import annotations

import argparse
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

from tuiagent.config import Settings
from tuiagent.llm.tokens import estimate_tokens
from tuiagent.offline import OfflineModel

_SENTENCES = (
    "Every token the model reads is paid for, so the panel shows it as it arrives.",
    "A cache read costs a tenth of fresh input on most models, but not on all of them.",
    "The router weighs the tier against the cache that the conversation has already built.",
    "Compressed tool results keep their originals, so nothing the user needs is lost.",
)


def long_answer(tokens: int) -> str:
    """Markdown prose of about `tokens` tokens: paragraphs, a heading and a list now and then."""
    parts: list[str] = []
    used, n = 0, 0
    while used < tokens:
        if n % 12 == 0:
            block = f"## Part {n // 12 + 1}\n\n"
        elif n % 5 == 0:
            block = "".join(f"- {s}\n" for s in _SENTENCES[:3]) + "\n"
        else:
            block = " ".join(_SENTENCES[(n + i) % 4] for i in range(4)) + "\n\n"
        parts.append(block)
        used += estimate_tokens(block)
        n += 1
    return "".join(parts)


def code_answer(lines: int) -> str:
    """A Python fence of `lines` lines, each ending in its number ("# step N")."""
    body = "".join(
        f"    total_{i} = sum(call.cost for call in calls[{i}:])  # step {i}\n"
        for i in range(1, lines + 1)
    )
    return f"Here it is:\n\n```python\ndef totals(calls):\n{body}```\n\nThat is all."


class LongModel(OfflineModel):
    """Answers every request with the same long Markdown text."""

    def __init__(self, tokens: int, tokens_per_second: float = 0.0, code: int = 0) -> None:
        super().__init__(tokens_per_second=tokens_per_second)
        self.text = code_answer(code) if code else long_answer(tokens)

    def _content(self, body: dict[str, Any], max_tokens: int) -> tuple[list[dict[str, Any]], str]:
        return [{"type": "text", "text": self.text}], "end_turn"


def bench_settings(log_dir: Path, tokens: int) -> Settings:
    return Settings().with_changes(
        log_dir=log_dir, max_tokens=tokens * 2, max_cost_usd=Decimal(100)
    )


def prefill(app: Any, messages: int) -> None:
    """Earlier conversation on screen: user messages and Markdown answers, alternating."""
    text = long_answer(120)
    for i in range(messages // 2):
        app.main.chat.add_user(f"Earlier question {i}: what did that cost?")
        app.main.chat.add_answer(text)


def main() -> None:
    from tuiagent.ui.app import TuiagentApp

    p = argparse.ArgumentParser()
    p.add_argument("workspace", type=Path)
    p.add_argument("log_dir", type=Path)
    p.add_argument("--tokens", type=int, default=20_000)
    p.add_argument("--tps", type=float, default=0.0)
    p.add_argument("--prefill", type=int, default=0)
    p.add_argument("--pid-file", type=Path)
    p.add_argument("--code", type=int, default=0)
    p.add_argument("--whole-fences", action="store_true")
    args = p.parse_args()
    if args.whole_fences:
        from tuiagent.ui.widgets import entries

        entries.PIECE_LINES = 10**9
    if args.pid_file:
        args.pid_file.write_text(str(os.getpid()))
    app = TuiagentApp(
        bench_settings(args.log_dir, args.tokens),
        workspace=args.workspace,
        offline=True,
        offline_model=LongModel(args.tokens, args.tps, args.code),
        state_path=args.log_dir / "ui-state.json",
        themes_dir=args.log_dir / "no-themes",
    )
    if args.prefill:
        app.call_later(prefill, app, args.prefill)
    app.run()
    app.finish_run()


if __name__ == "__main__":
    main()
