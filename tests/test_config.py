"""Settings in sections: flat config files load into them, every key is read by one loop from
the fields' metadata, the manual's table is made from the same metadata (tests/test_docs.py
keeps docs/config.md equal to it), and a change is a copy."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

import pytest

from tuiagent.config import (
    DEFAULT_SYSTEM_PROMPT,
    DEFAULT_TIER_MODELS,
    SETTINGS_BY_KEY,
    RouterRule,
    Settings,
    config_table,
    load_settings,
)
from tuiagent.errors import ConfigError
from tuiagent.ledger import BudgetSpec, Window

# A config.toml written for the flat keys, before there were sections.
FLAT_CONFIG = """
tier = "fast"
max_cost_usd = 0.5
max_turns = 7
max_tokens = 2048
system_prompt = "be brief"
system_prompt_file = "~/prompt.txt"
log_dir = "~/logs"
max_retries = 0
retry_max_wait_s = 5
call_timeout_s = 30
stream_idle_timeout_s = 9.5
min_useful_tokens = 300
hold_wait_s = 2.5
context_management = false
compact_at = 0.5
compact_early_at = 0.3
compact_min_saving_usd = 0.02
context_keep_turns = 4
context_clear_min_tokens = 50
context_window = 50000
router_budget_floor = 0.3
router_classifier = true
cache = false
cache_ttl = "1h"
keep_warm = true
compress = false
compress_over_tokens = 400
summarize_results = true
allow_commands = true
allow_fetch = true
allow_edits = true
allow_mcp = true
mcp_defer_above = 5000
command_timeout_s = 12
subagents = false
max_parallel_agents = 2
budget_step_usd = "$0.25"
offline_tokens_per_second = 80
proxy_unbilled_paths = ["/v1/files/*", "/v1/skills"]
proxy_allowed_origins = ["http://localhost:3000"]
proxy_allowed_hosts = ["proxy.lan"]
ledger_url = "postgresql://team@db.example/tuiagent"
ledger_lease_s = 10

[tiers]
deep = "claude-opus-4-1"

[prices."my-model"]
input_mtok = 1
output_mtok = 2

[keymap]
cap_up = "f9"

[mcp_servers.notes]
command = "python"
args = ["notes.py"]
env = { NOTES = "~/n" }
allow = true

[[router_rules]]
when_words = ["list"]
tier = "fast"

[[budgets]]
scope = "global"
window = "day"
max_cost_usd = 20
timezone = "Europe/Paris"

[[budgets]]
scope = "model"
match = "claude-opus-4-1"
window = "5h"
max_cost_usd = "$2.50"
name = "opus"
"""


def test_a_flat_config_loads_into_the_sections(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(FLAT_CONFIG)
    s = load_settings(config)
    home = Path("~").expanduser()
    assert dataclasses.asdict(s.run) == {
        "max_cost_usd": Decimal("0.5"),
        "max_turns": 7,
        "max_tokens": 2048,
        "system_prompt": "be brief",
        "system_prompt_file": home / "prompt.txt",
        "log_dir": home / "logs",
        "max_retries": 0,
        "retry_max_wait_s": 5.0,
        "call_timeout_s": 30.0,
        "stream_idle_timeout_s": 9.5,
        "min_useful_tokens": 300,
        "hold_wait_s": 2.5,
        "context_management": False,
        "compact_at": 0.5,
        "compact_early_at": 0.3,
        "compact_min_saving_usd": Decimal("0.02"),
        "context_keep_turns": 4,
        "context_clear_min_tokens": 50,
        "context_window": 50000,
    }
    assert s.router.tier == "fast"
    assert dict(s.router.tiers) == {**DEFAULT_TIER_MODELS, "deep": "claude-opus-4-1"}
    assert s.router.prices["my-model"] == {"input_mtok": Decimal(1), "output_mtok": Decimal(2)}
    assert (s.router.budget_floor, s.router.classifier) == (Decimal("0.3"), True)
    assert s.router.rules == (RouterRule("fast", ("list",)),)
    assert (s.cache.enabled, s.cache.ttl, s.cache.keep_warm) == (False, "1h", True)
    assert dataclasses.asdict(s.tools) == {
        "compress": False,
        "compress_over_tokens": 400,
        "summarize_results": True,
        "allow_commands": True,
        "allow_fetch": True,
        "mcp_servers": (
            {
                "name": "notes",
                "command": "python",
                "args": ("notes.py",),
                "env": (("NOTES", "~/n"),),
                "url": None,
                "allow": True,
            },
        ),
        "mcp_defer_above": 5000,
        "allow_edits": True,
        "allow_mcp": True,
        "command_timeout_s": 12.0,
        "subagents": False,
        "max_parallel_agents": 2,
    }
    assert (s.ui.budget_step_usd, dict(s.ui.keymap)) == (Decimal("0.25"), {"cap_up": "f9"})
    assert s.offline.tokens_per_second == 80.0
    assert s.proxy.unbilled_paths == ("/v1/files/*", "/v1/skills")
    assert (s.proxy.allowed_origins, s.proxy.allowed_hosts) == (
        ("http://localhost:3000",),
        ("proxy.lan",),
    )
    assert (s.ledger.url, s.ledger.lease_s) == ("postgresql://team@db.example/tuiagent", 10.0)
    assert s.ledger.budgets == (
        BudgetSpec("global", Window("day", 0, "Europe/Paris"), Decimal(20)),
        BudgetSpec(
            "model", Window("rolling", 5 * 3600), Decimal("2.50"), "claude-opus-4-1", "opus"
        ),
    )
    # The file sets every key, each to a value other than its default.
    for key, setting in SETTINGS_BY_KEY.items():
        assert getattr(getattr(s, setting.section), setting.name) != setting.default, key


def test_no_file_is_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUIAGENT_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    s = load_settings()
    assert s == Settings()
    assert s.run.system_prompt == DEFAULT_SYSTEM_PROMPT and s.router.tier == "auto"
    assert s.run.max_cost_usd == Decimal("1.00") and s.cache.enabled


@pytest.mark.parametrize("key", sorted(SETTINGS_BY_KEY))
def test_every_key_refuses_a_bad_value_in_one_line_naming_it(tmp_path: Path, key: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f"{key} = [1]\n")  # no setting takes a list of numbers
    with pytest.raises(ConfigError, match=key) as caught:
        load_settings(config)
    assert "\n" not in str(caught.value)


def test_an_unknown_key_is_named(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("max_cost = 1\n")  # not a key: max_cost_usd is
    with pytest.raises(ConfigError, match=r"unknown config key 'max_cost' in .*config\.toml"):
        load_settings(config)
    config.write_text("[run]\nmax_cost_usd = 1\n")  # sections are the code's, not the file's
    with pytest.raises(ConfigError, match="unknown config key 'run'"):
        load_settings(config)


def test_settings_are_frozen_and_a_change_is_a_copy() -> None:
    before = Settings()
    after = before.with_changes(max_cost_usd=Decimal(2), cache=False, tier="deep")
    assert (after.run.max_cost_usd, after.cache.enabled, after.router.tier) == (
        Decimal(2),
        False,
        "deep",
    )
    assert before == Settings() and after.tools is before.tools  # untouched sections shared
    with pytest.raises(dataclasses.FrozenInstanceError):
        after.run.max_turns = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        after.run = before.run  # type: ignore[misc]
    with pytest.raises(TypeError):
        before.router.tiers["fast"] = "other"  # type: ignore[index]
    with pytest.raises(TypeError, match="no setting has the config key 'max_cost'"):
        before.with_changes(max_cost=Decimal(2))


def test_the_table_has_a_row_per_key_with_its_default() -> None:
    rows = config_table().splitlines()[2:]
    assert len(rows) == len(SETTINGS_BY_KEY)
    assert "| `max_cost_usd` | `1.00` | the run's spending cap |" in rows
    assert any(r.startswith('| `cache_ttl` | `"5m"` |') for r in rows)
    assert any(r.startswith("| `[[router_rules]]` | none |") for r in rows)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('scope = "galaxy"', "'budgets[0].scope' must be global | session"),
        ('window = "1y"', "'budgets[0].window' must be run, day, week, month, or a rolling"),
        ('window = "day"\ntimezone = "Mars/Olympus"', "'budgets[0].timezone': unknown time zone"),
        ('window = "5h"\ntimezone = "UTC"', "'budgets[0].timezone' applies to day, week and"),
        ("max_cost_usd = 0", "'budgets[0].max_cost_usd' must be a positive number"),
        ("max_cost_usd = 1e30", "'budgets[0].max_cost_usd' must be a positive number"),
        ('match = "x"', "'budgets[0].match' does not apply to the global scope"),
        ("colour = 1", "unknown config key 'budgets[0].colour'"),
        ('name = " "', "'budgets[0].name' must be a non-empty string"),
    ],
)
def test_a_bad_budget_is_one_line_naming_its_key(tmp_path: Path, table: str, message: str) -> None:
    config = tmp_path / "config.toml"
    keys = dict(line.split(" = ", 1) for line in table.splitlines())
    base = {"scope": '"global"', "window": '"day"', "max_cost_usd": "1", **keys}
    config.write_text("[[budgets]]\n" + "".join(f"{k} = {v}\n" for k, v in base.items()))
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_two_budgets_of_one_name_and_a_missing_key_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    twice = '[[budgets]]\nscope = "key"\nwindow = "day"\nmax_cost_usd = 1\n' * 2
    config.write_text(twice)
    with pytest.raises(ConfigError, match="two budgets are named 'key day'"):
        load_settings(config)
    config.write_text('[[budgets]]\nscope = "key"\nmax_cost_usd = 1\n')
    with pytest.raises(ConfigError, match=r"'budgets\[0\].window' is missing"):
        load_settings(config)
    config.write_text('ledger_url = "mysql://x"\n')
    with pytest.raises(ConfigError, match="'ledger_url' must be"):
        load_settings(config)
