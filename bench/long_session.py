"""A scripted long offline session: many messages reading and searching files, then
questions about the files read first. Shared by bench_long_session and the tests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from bench.large_results import service_log, source_file
from tuiagent.agent.events import AnswerDelta, Halted, Notice, TurnFinished
from tuiagent.config import Settings
from tuiagent.session import open_session

TOPICS = ("launch city", "budget code", "owner name", "release month")
CITIES = ("Lisbon", "Osaka", "Quito", "Tallinn", "Accra", "Perth", "Bergen", "Cusco")


def fact_value(n: int, topic: str) -> str:
    return f"{topic.split()[0].upper()}-{n:02d}-{CITIES[(n * 3 + len(topic)) % len(CITIES)]}"


def make_workspace(root: Path, facts: int = 20, large: int = 12) -> None:
    """Small notes with one fact per topic, and large logs and modules (compressed)."""
    (root / "notes").mkdir(parents=True)
    (root / "data").mkdir()
    for n in range(1, facts + 1):
        lines = [f"# Project {n:02d} notes", ""]
        lines += [f"The {topic} of project {n:02d} is {fact_value(n, topic)}." for topic in TOPICS]
        lines += ["", f"Status: TODO review project {n:02d} before the release."]
        (root / "notes" / f"p{n:02d}.txt").write_text("\n".join(lines) + "\n")
    code = source_file(1200).splitlines()
    for n in range(large):
        (root / "data" / f"worker{n:02d}.log").write_text(service_log(300 + 20 * n))
        (root / "data" / f"module{n:02d}.py").write_text("\n".join(code[n * 90 : n * 90 + 400]))


def script(messages: int = 100, facts: int = 20, large: int = 12) -> list[str]:
    """Read every note first, then large files and searches, then ask about the notes."""
    out = [f"What does notes/p{n:02d}.txt say?" for n in range(1, facts + 1)]
    middle = messages - 2 * facts
    for i in range(middle):
        kind = i % 4
        n = i % large
        if kind == 0:
            out.append(f"Read data/worker{n:02d}.log and tell me what went wrong.")
        elif kind == 1:
            out.append(f"What is in data/module{n:02d}.py?")
        elif kind == 2:
            out.append("Search for TODO")
        else:
            out.append("List the files here.")
    for n in range(1, facts + 1):
        topic = TOPICS[n % len(TOPICS)]
        out.append(f"What did notes/p{n:02d}.txt say about {topic}?")
    return out


def questions(facts: int = 20) -> list[tuple[int, str]]:
    return [(n, fact_value(n, TOPICS[n % len(TOPICS)])) for n in range(1, facts + 1)]


@dataclass
class SessionFigures:
    cost: Decimal = Decimal(0)
    peak_context_tokens: int = 0
    turns: int = 0
    halts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # notices at error level (a 400 is one)
    answers: list[str] = field(default_factory=list)
    context_records: list[dict[str, object]] = field(default_factory=list)

    def facts_right(self, facts: int = 20) -> int:
        tail = self.answers[-facts:]
        return sum(
            1 for (_, value), answer in zip(questions(facts), tail, strict=True) if value in answer
        )


async def run_session(
    root: Path,
    log_dir: Path,
    *,
    context_management: bool,
    messages: int = 100,
    facts: int = 20,
    large: int = 12,
    **overrides: object,
) -> SessionFigures:
    settings = Settings().with_changes(
        log_dir=log_dir,
        max_cost_usd=Decimal("50"),
        tier="fast",
        context_management=context_management,
    )
    settings = settings.with_changes(**overrides)
    session = open_session(settings, workspace=root, offline=True)
    agent = session.agent
    agent.start()
    figures = SessionFigures()
    for prompt in script(messages, facts, large):
        answer: list[str] = []
        async for event in agent.send(prompt):
            if isinstance(event, AnswerDelta):
                answer.append(event.text)
            elif isinstance(event, TurnFinished):
                r = event.record
                figures.turns += 1
                if r.purpose == "agent":
                    figures.peak_context_tokens = max(figures.peak_context_tokens, r.context_tokens)
            elif isinstance(event, Halted):
                figures.halts.append(event.reason)
            elif isinstance(event, Notice) and event.level == "error":
                figures.errors.append(event.text)
        figures.answers.append("".join(answer))
    agent.finish()
    figures.cost = agent.spending.spent
    for line in agent.log.path.read_text().splitlines():
        record = json.loads(line)
        if record["type"] == "context":
            figures.context_records.append(record)
    return figures
