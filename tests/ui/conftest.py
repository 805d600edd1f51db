from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.app import FIXED_NOW, ticking_clock
from tuiagent.config import Settings
from tuiagent.offline import OfflineModel
from tuiagent.ui.app import TuiagentApp


@pytest.fixture
def make_app(workspace: Path, log_dir: Path, tmp_path: Path) -> Callable[..., TuiagentApp]:
    def make(
        resume: Path | None = None, offline_model: OfflineModel | None = None, **overrides: Any
    ) -> TuiagentApp:
        settings = Settings().with_changes(log_dir=log_dir)
        settings = settings.with_changes(**overrides)
        return TuiagentApp(
            settings,
            workspace=workspace,
            offline=True,
            resume=resume,
            clock=lambda: FIXED_NOW,
            state_path=tmp_path / "state" / "ui-state.json",
            themes_dir=tmp_path / "user-themes",
            agent_clock=ticking_clock(),
            offline_model=offline_model,
        )

    return make
