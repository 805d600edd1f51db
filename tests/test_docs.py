"""The manual (docs/, built by mkdocs in CI) is kept true to the code: every flag of every
command is in the CLI reference under its command, every flag there exists, every config key
is in the config table (made from the settings' metadata), every field of every run-log
record is on the run log's page, every tool the agent can offer is named, every page is in
the site, and every file of this repository the manual names exists."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from tuiagent.cli.main import build_parser
from tuiagent.config import SETTINGS_BY_KEY, config_table
from tuiagent.llm.tokens import TokenUsage
from tuiagent.runs.records import Record

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
DOCS = ROOT / "docs"
CLI = DOCS / "cli.md"
CONFIG = DOCS / "config.md"
USAGE_KEYS = {f.name for f in dataclasses.fields(TokenUsage) if f.init}


def commands(parser: argparse.ArgumentParser | None = None) -> dict[str, argparse.ArgumentParser]:
    """Every command's parser by its name as typed: `tuiagent`, `tuiagent run`, ..."""
    parser = parser or build_parser()
    found = {parser.prog: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.update(commands(sub))
    return found


def flags(parser: argparse.ArgumentParser) -> set[str]:
    return {
        flag
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction)
        for flag in action.option_strings
        if flag.startswith("--")
    }


def sections(text: str) -> dict[str, str]:
    """The CLI reference's `## tuiagent ...` sections, by command."""
    parts = re.split(r"^## (tuiagent(?: \w+)?)\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def table_flags(section: str) -> set[str]:
    """The flags a section's table documents: each row's first cell, `--flag ARG`."""
    return set(re.findall(r"^\| `(--[a-z][a-z-]*)", section, flags=re.M))


# `tuiagent` (the app) takes every flag of `tuiagent run` but --json: its section says so and
# names only its own; `run`'s table documents the rest.
SHARES_TABLE = {"tuiagent": "tuiagent run"}


def undocumented(parsers: dict[str, argparse.ArgumentParser], text: str) -> list[str]:
    """Each command without a section, and each flag not in its command's table."""
    by_command = sections(text)
    missing = [f"{name}: no '## {name}' section" for name in parsers if name not in by_command]
    for name, parser in parsers.items():
        documented = table_flags(by_command.get(name, ""))
        documented |= table_flags(by_command.get(SHARES_TABLE.get(name, ""), ""))
        missing += [f"{name} {flag}" for flag in sorted(flags(parser) - documented)]
    return missing


def test_every_flag_of_every_command_is_in_the_cli_reference() -> None:
    assert undocumented(commands(), CLI.read_text(encoding="utf-8")) == []


def test_the_cli_reference_documents_no_flag_that_does_not_exist() -> None:
    parsers = commands()
    for name, section in sections(CLI.read_text(encoding="utf-8")).items():
        assert name in parsers, f"docs/cli.md documents '{name}', which is no command"
        assert table_flags(section) <= flags(parsers[name]), name


def test_a_flag_added_without_docs_is_caught() -> None:
    """The check above can fail: a new flag, or a new command, is named as undocumented."""
    parsers = commands()
    text = CLI.read_text(encoding="utf-8")
    parsers["tuiagent proxy"].add_argument("--shiny-new-flag", action="store_true")
    sub = argparse.ArgumentParser(prog="tuiagent frobnicate")
    sub.add_argument("--level")
    parsers["tuiagent frobnicate"] = sub
    assert undocumented(parsers, text) == [
        "tuiagent frobnicate: no '## tuiagent frobnicate' section",
        "tuiagent proxy --shiny-new-flag",
        "tuiagent frobnicate --level",
    ]


def test_the_config_table_is_the_settings_metadata() -> None:
    lines = CONFIG.read_text(encoding="utf-8").splitlines()
    start = lines.index("| key | default | meaning |")
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    assert "\n".join(lines[start:end]) == config_table(), (
        "docs/config.md's config table drifted: paste tuiagent.config.config_table() over it"
    )


@pytest.mark.parametrize("key", sorted(SETTINGS_BY_KEY))
def test_every_config_key_has_a_row(key: str) -> None:
    setting = SETTINGS_BY_KEY[key]
    shown = setting.option.shown_key or f"`{key}`"
    assert f"\n| {shown} |" in CONFIG.read_text(encoding="utf-8"), f"{key} is not in docs/config.md"


REPO_PATH = re.compile(r"`((?:tuiagent|tests|bench|scripts|themes)/[\w./-]*)`")


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_every_file_the_manual_names_exists(page: Path) -> None:
    named = set(REPO_PATH.findall(page.read_text(encoding="utf-8")))
    missing = sorted(p for p in named if not (ROOT / p).exists() and "<" not in p)
    assert missing == [], f"{page.name} names files that are not in the repository"


def test_the_site_lists_every_page() -> None:
    """mkdocs.yml's nav holds every page of docs/ (a page left out is not in the site)."""
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8").split("\nnav:\n", 1)[1]
    listed = set(re.findall(r":\s*([\w-]+\.md)\s*$", nav, flags=re.M))
    assert listed == {p.name for p in DOCS.glob("*.md")}


def record_types() -> list[type[Record]]:
    """The run log's record types, the agent's (the proxy's share their types: records.md
    names its own fields apart)."""
    found, todo = [], list(Record.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if getattr(cls, "SOURCE", None) is None and "TYPE" in vars(cls):
            found.append(cls)
    return sorted(found, key=lambda c: c.TYPE)


@pytest.mark.parametrize("record", record_types(), ids=lambda c: c.TYPE)
def test_every_field_of_a_record_is_in_the_run_log_page(record: type[Record]) -> None:
    text = (DOCS / "records.md").read_text(encoding="utf-8")
    row = re.search(rf"^\| `{record.TYPE}` \| (.*) \|$", text, flags=re.M)
    assert row is not None, f"docs/records.md has no row for `{record.TYPE}`"
    words = set(re.findall(r"\w+", row.group(1)))
    inherited = {f.name for f in dataclasses.fields(Record)}
    fields = {f.name for f in dataclasses.fields(record)} - inherited
    if "usage" in fields:  # written flat: its token counts are the record's keys
        fields = fields - {"usage"} | ({"usage"} if "usage" in words else USAGE_KEYS)
    assert sorted(fields - words) == [], f"`{record.TYPE}` fields not in docs/records.md"


def test_the_readme_links_to_files_that_exist_and_to_every_page() -> None:
    """The front page's links into the repository (the manual's pages, the picture, the
    script that makes it) resolve, and every page of the manual is one of them."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = {t.split("#")[0] for t in re.findall(r"\]\(([^):]+)\)", text)}
    assert sorted(t for t in targets if not (ROOT / t).exists()) == []
    assert {f"docs/{p.name}" for p in DOCS.glob("*.md")} <= targets


def test_every_tool_the_agent_can_offer_is_in_the_manual(tmp_path: Path) -> None:
    """The tools of an offline session with every tool allowed (the edit tools, which are
    added when first offered, included) are each named on a page of the manual."""
    from tests.support.session import offline_session

    settings = {"allow_commands": True, "allow_fetch": True, "allow_edits": True}
    session = offline_session(tmp_path, tmp_path / "logs", **settings)
    agent = session.agent
    names = {d["name"] for d in agent.toolbox.definitions()}
    names |= {t.name for t in agent.editor.tools()} if agent.editor else set()
    agent.finish()
    pages = "".join((DOCS / p).read_text(encoding="utf-8") for p in ("tools.md", "context.md"))
    pages += (DOCS / "subagents.md").read_text(encoding="utf-8")
    assert len(names) >= 9
    assert sorted(n for n in names if f"`{n}" not in pages) == []
