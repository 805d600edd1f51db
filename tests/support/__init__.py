"""What the tests share: fakes of the API and its clients (servers on 127.0.0.1), a throwaway
PostgreSQL, and helpers that run the CLI, an offline session or the app. The pytest fixtures
that use them are in tests/conftest.py (and tests/ui/conftest.py for the app)."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
"""Recorded traffic (fixtures/wire), an old run log, the test MCP server."""
