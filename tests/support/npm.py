"""Node packages for tests that drive real JavaScript clients (the coding agent, the
TypeScript SDK), installed by the test itself into a cache dir shared by runs.

A test that needs one calls `installed(PACKAGE)`: the first run installs it with npm (a few
seconds with npm's own cache warm), later runs find it there. Where npm or node is missing,
or the registry cannot be reached, the test is skipped and says why.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from pathlib import Path

import platformdirs
import pytest

# Pinned: a test's client changes when this line does, not when npm publishes.
CLAUDE_CODE = "@anthropic-ai/claude-code@2.1.197"
TYPESCRIPT_SDK = "@anthropic-ai/sdk@1.17.0"


def _cache() -> Path:
    where = os.environ.get("TUIAGENT_TEST_NPM_DIR")
    return Path(where) if where else Path(platformdirs.user_cache_dir("tuiagent-tests")) / "npm"


def installed(spec: str) -> Path:
    """The `node_modules` folder holding `spec` (`name@version`); skips the test if npm
    cannot install it."""
    name = spec[: spec.rindex("@")] if spec.rfind("@") > 0 else spec  # without its version
    root = _cache() / re.sub(r"[^\w.-]+", "_", spec)
    modules = root / "node_modules"
    if (modules / name / "package.json").exists():
        return modules
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("npm and node are not installed")
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # tests running at once install once
        if not (modules / name / "package.json").exists():
            try:
                done = subprocess.run(
                    ["npm", "install", "--prefix", str(root), "--no-audit", "--no-fund", spec],
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
            except subprocess.TimeoutExpired:
                pytest.skip(f"npm could not install {spec} in 5 minutes (registry unreachable?)")
            if done.returncode != 0:
                why = (done.stderr.strip().splitlines() or ["no output"])[-1]
                pytest.skip(f"npm could not install {spec}: {why}")
    return modules
