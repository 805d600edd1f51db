"""Make the README's picture of the app: a real offline session under Textual's Pilot, exported
with Textual's own SVG screenshot (`App.export_screenshot`).

    python scripts/screenshot.py            # writes docs/images/app.svg

Nothing leaves the machine: the offline model answers (and the app says it is simulated), in
a workspace made here, with the run log, the UI state and the themes in a temporary folder.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from tuiagent.config import Settings
from tuiagent.ui.app import APP_OFFLINE_TOKENS_PER_SECOND, TuiagentApp

OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "app.svg"
SIZE = (120, 42)
PROMPT = "What do big.md and README.md say?"


def workspace(root: Path) -> Path:
    """A folder with a large log (compressed on the way to the model) and a short README."""
    ws = root / "ws"
    ws.mkdir()
    lines = [
        f"2026-01-01 12:{i // 60 % 60:02d}:{i % 60:02d} "
        + (f"WARN slow disk {i}" if i % 7 == 0 else f"INFO request {i} served in {i % 40} ms")
        for i in range(1020)
    ]
    (ws / "big.md").write_text("\n".join(lines) + "\n")
    (ws / "README.md").write_text("# Demo\n")
    return ws


async def shoot(root: Path) -> str:
    settings = Settings().with_changes(
        log_dir=root / "runs", offline_tokens_per_second=APP_OFFLINE_TOKENS_PER_SECOND
    )  # streamed at the app's pace, as `tuiagent --offline` does
    app = TuiagentApp(
        settings,
        workspace=workspace(root),
        offline=True,
        state_path=root / "state" / "ui-state.json",
        themes_dir=root / "themes",
    )
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(500):  # the session opens (the SDK loads) in its own worker
            if app.agent is not None:
                break
            await pilot.pause(0.02)
        app.main.input.load_text(PROMPT)
        await pilot.press("enter")
        await pilot.pause()
        for _ in range(1500):
            if not app.busy and not app.queue:
                break
            await pilot.pause(0.02)
        else:
            raise SystemExit("the offline session never went idle")
        await pilot.pause(0.2)
        return app.export_screenshot(title="tuiagent --offline")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        svg = asyncio.run(shoot(Path(tmp)))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(svg, encoding="utf-8")
    print(f"wrote {OUT} ({len(svg):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
