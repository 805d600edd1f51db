"""Building a run from settings: the client (real or offline), the tools, the agent.

Shared by the headless runner and the app, so both start runs the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tuiagent.agent.delegate import Delegator
from tuiagent.agent.loop import Agent
from tuiagent.agent.tools import Toolbox, Workspace
from tuiagent.agent.tools.command import CommandRunner
from tuiagent.agent.tools.fetch import Fetcher
from tuiagent.apikey import api_key
from tuiagent.config import TIERS, Settings
from tuiagent.cost.budget import Budget
from tuiagent.llm.client import AnthropicProvider, make_client
from tuiagent.llm.provider import Provider
from tuiagent.offline import OfflineModel
from tuiagent.paths import default_log_dir
from tuiagent.preflight import check_base_url, check_workspace

NO_KEY_NOTICE = (
    "ANTHROPIC_API_KEY is not set: using the built-in offline model (simulated answers, "
    "real prices of the tier's model)."
)


@dataclass(frozen=True)
class PromptCost:
    """What a prompt costs on every turn on one tier: read plainly, or from the cache."""

    tier: str
    model: str
    plain: Decimal
    cached: Decimal


@dataclass
class Session:
    """A run built and ready. A face steers `agent` through agent/protocol.py and asks the
    session for the rest (the log's path, what the system prompt costs)."""

    agent: Agent
    offline_model: OfflineModel | None
    notice: str | None
    delegator: Delegator | None = None  # the delegate tool (config subagents)
    history: list[dict[str, Any]] = field(default_factory=list)  # a resumed run's messages

    @property
    def log_path(self) -> Path:
        return self.agent.log.path

    @property
    def system_prompt(self) -> str:
        return self.agent.system_prompt

    def system_prompt_costs(self) -> list[PromptCost]:
        """What the system prompt costs per turn on each tier the agent may run on."""
        from tuiagent.llm.tokens import TokenUsage, estimate_tokens

        agent, n = self.agent, estimate_tokens(self.agent.system_prompt)
        out = []
        for tier in TIERS if agent.steering.tier == "auto" else (agent.steering.tier,):
            model = agent.settings.router.model_for(tier)
            plain = agent.pricer.price(model, TokenUsage(input_tokens=n)).total
            cached = agent.pricer.price(model, TokenUsage(cache_read_input_tokens=n)).total
            out.append(PromptCost(tier, model, plain, cached))
        return out


@dataclass
class Connection:
    """The provider a run talks through (llm/provider.py): the real API, or the offline
    model (and why)."""

    provider: Provider
    offline_model: OfflineModel | None
    notice: str | None


def connect(
    settings: Settings, *, offline: bool, offline_model: OfflineModel | None = None
) -> Connection:
    """The offline model when asked for or when there is no key (with a notice); else the API."""
    notice = None
    key = api_key()  # checked first: a bad key is refused before any client is built
    if not offline and key is None:
        offline, notice = True, NO_KEY_NOTICE
    if offline:
        offline_model = offline_model or OfflineModel(
            tokens_per_second=settings.offline.tokens_per_second,
            context_window=settings.run.context_window,
            priced_models=settings.router.prices,
        )
        client = make_client(offline_transport=offline_model)
        return Connection(AnthropicProvider(client, "offline"), offline_model, notice)
    check_base_url()
    return Connection(AnthropicProvider(make_client()), None, notice)


def session_of(transcript: Path) -> str:
    """The session a run's transcript belongs to: the one its run_start names (a run that
    was itself resumed), else the run's own id. Its budgets go on across resumes."""
    from tuiagent.runs.log import read_run
    from tuiagent.runs.records import RunStart

    run_id = transcript.stem
    try:
        found, _ = read_run(transcript.parent.parent / f"{run_id}.jsonl")
    except OSError:
        return run_id
    start = next((r for r in found if isinstance(r, RunStart)), None)
    return start.session if start is not None and start.session else run_id


def open_session(
    settings: Settings,
    *,
    workspace: Path,
    offline: bool,
    offline_model: OfflineModel | None = None,
    clock: Callable[[], float] = time.monotonic,
    resume: Path | None = None,
    budget: Budget | None = None,
    workspace_label: Path | None = None,
) -> Session:
    """Check the preconditions (workspace, prices) and build the agent; `resume`, a run's
    transcript, gives it that conversation to go on with; `budget`, one shared with other
    runs (an eval's); `workspace_label`, the workspace run_start names when the run works
    in a copy. Nothing is spent here."""
    check_workspace(workspace)
    ws = Workspace(workspace)
    conn = connect(settings, offline=offline, offline_model=offline_model)
    toolbox = Toolbox()
    for tool in ws.tools():
        toolbox.add(tool)
    if settings.tools.allow_commands:
        toolbox.add(CommandRunner(ws, settings.tools.command_timeout_s).tool())
    if settings.tools.allow_fetch:
        toolbox.add(Fetcher(settings.tools.command_timeout_s).tool())
    log_dir = settings.run.log_dir or default_log_dir()
    agent = Agent(
        settings,
        provider=conn.provider,
        toolbox=toolbox,
        log_dir=log_dir,
        clock=clock,
        session=session_of(resume) if resume is not None else None,
        budget=budget,
    )
    agent.workspace = str((workspace_label or workspace).resolve())
    history: list[dict[str, Any]] = []
    if resume is not None:
        from tuiagent.runs.transcript import load_resumable

        earlier = load_resumable(resume)
        agent.resume(earlier)
        history = earlier.messages
    from tuiagent.agent.edits import Editor, checkpoints_file

    agent.editor = Editor(ws.files, checkpoints_file(agent.transcript.path))
    if settings.tools.mcp_servers:
        from tuiagent.agent.mcp import McpTools

        agent.mcp = McpTools(
            agent.settings,
            toolbox,
            agent.place,
            agent.pricer,
            system_prompt=agent.parts.conversation.system_prompt,
        )
        agent.parts.conversation.offer = agent.mcp.offered  # deferred to tool search, or not
    notices = [n for n in (conn.notice, *agent.pricer.notices) if n]
    delegator = None
    if settings.tools.subagents:
        delegator = Delegator(agent)
        agent.toolbox.add(delegator.tool())
    return Session(agent, conn.offline_model, "; ".join(notices) or None, delegator, history)
