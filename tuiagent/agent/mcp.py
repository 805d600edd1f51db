"""MCP servers (config `[mcp_servers.NAME]`) through the official `mcp` SDK.

A server is a command started with stdio or a streamable HTTP URL. Its tools are offered
to the model as `mcp__NAME__TOOL` (the server's name in every tool's name). Each server is
one connection, held by a task of its own for the whole session (the SDK's transports are
task-scoped), started before the session's first message. A server that fails to start
or dies is one line: its tools go away and the session goes on.

Calls need approval as commands do (the app asks: y, a, n, w) unless the server's config
says `allow = true`; headless, `--allow-mcp` is the approval, and without it (or `allow`)
a server's tools are not offered.

What each server's tool definitions cost is an `mcp` record per server when it starts
(its tools and their definition tokens) and an `mcp_cost` record after each agent call (per
server: the tokens its definitions took in that request and the dollars they cost at the
call's own rates), so the report and the app's panel show it per call and per session.

Deferral (the API's tool search, platform.claude.com/docs/en/agents-and-tools/tool-use/
tool-search-tool): when the servers' definitions together reach `mcp_defer_above` tokens,
they are offered with `defer_loading: true` beside the regex tool search tool, if that pays
by the rule of `Deferral` (decided once, before the session's first call, when nothing is
cached: changing it later would rewrite the whole cached prompt). The model then sees only
the search tool and the built-in tools; a search (`server_tool_use` and the API's
`tool_search_tool_result`, in the answer) loads the 3-5 definitions it finds, which stay in
the conversation. A reference to a tool the request no longer defers (its server died, or a
resumed session runs without it) is left out of what is sent: the API refuses a reference
without its definition.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tuiagent.agent.call import Place
from tuiagent.agent.events import Event, EventStream, McpCostNoted, McpStateChanged, Notice, Steps
from tuiagent.agent.tools import Tool, Toolbox, ToolOutput
from tuiagent.config import TIERS, McpServer, Settings
from tuiagent.cost.display import money
from tuiagent.cost.pricing import ZERO, Pricer, Rates
from tuiagent.llm.models import takes_tool_search
from tuiagent.llm.tokens import (
    REQUEST_OVERHEAD,
    SEARCH_RESULTS,
    block_tokens,
    deferred,
    estimate_request_tokens,
    estimate_tokens,
    loaded_tokens,
    references,
    request_blocks,
)
from tuiagent.runs.records import McpCost, McpServerState, Turn
from tuiagent.terminal import printable

PREFIX = "mcp__"
START_TIMEOUT_S = 20.0
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_MAX_NAME = 64  # the API's limit on a tool's name


def tool_name(server: str, tool: str) -> str:
    """The name the model sees: `mcp__SERVER__TOOL`, in the characters the API allows."""
    return (PREFIX + server + "__" + _NAME_CHARS.sub("_", tool))[:_MAX_NAME]


def server_of(name: str) -> str | None:
    """The server whose tool `name` is, or None for a built-in tool."""
    if not name.startswith(PREFIX):
        return None
    return name[len(PREFIX) :].partition("__")[0] or None


# The tool search tool the agent offers beside deferred definitions (its regex variant).
SEARCH_TOOL = {"type": "tool_search_tool_regex_20251119", "name": "tool_search_tool_regex"}
# The rule's horizon (as clearing's, agent/context.py), and how often the rule has the model
# search: every 2nd call, the fewest calls of a request that uses a tool it must find (the
# call that finds and calls it, and the answer). Each search loads SEARCH_RESULTS tools.
DEFER_PAYBACK_CALLS = 10
CALLS_PER_SEARCH = 2


@dataclass(frozen=True)
class Deferral:
    """Whether the MCP definitions go through tool search, and why (`reason`).

    The rule: over the next DEFER_PAYBACK_CALLS calls from a cold cache, at the rates of the
    session's tier, the definitions in the prompt (written on the first call, read on the
    rest) against tool search: the search tool's definition in their place (written, then
    read), and a search on every CALLS_PER_SEARCH-th call from the first, each loading the
    SEARCH_RESULTS largest definitions not loaded yet, until all are. A search costs, in its
    answer, its query as output and one more pass over the whole input (the API samples
    again after a search: recorded, shared/wire/stream_tool_use_input_json_delta.yaml): the
    prompt read from the cache (`prompt`: system, built-in tools and the search tool, with
    what earlier searches added), and the query, its result and the definitions it loads
    as input; those then stay in the conversation (written on the next call, read on the
    rest). Deferral is taken when it costs less. `prompt` is the prompt as it starts: the
    history a later search also reads again is not known when this is decided, so the rule
    counts none of it."""

    defer: bool
    tokens: int  # the definitions' tokens on each call, in the prompt
    kept_usd: Decimal
    deferred_usd: Decimal

    @property
    def reason(self) -> str:
        kept, cheaper = money(self.kept_usd), money(self.deferred_usd)
        how = (
            f"the search tool, and a search every {CALLS_PER_SEARCH} calls loading "
            f"{SEARCH_RESULTS} of them"
        )
        if self.defer:
            return (
                f"in the prompt they would cost {kept} over {DEFER_PAYBACK_CALLS} calls; "
                f"through tool search, {cheaper} ({how})"
            )
        return (
            f"through tool search they would cost {cheaper} over {DEFER_PAYBACK_CALLS} calls "
            f"({how}); in the prompt, {kept}"
        )

    @classmethod
    def weigh(cls, definitions: list[dict[str, Any]], prompt: int, rates: Rates) -> Deferral:
        sizes = sorted((block_tokens(d) for d in definitions), reverse=True)
        tokens, n = sum(sizes), DEFER_PAYBACK_CALLS
        names = sorted((str(d["name"]) for d in definitions), key=estimate_tokens, reverse=True)
        # A search's query (the model's output: a tool's name as the pattern) and its result
        # (the references to the longest names).
        query = block_tokens(
            {"type": "server_tool_use", "name": SEARCH_TOOL["name"], "input": {"query": ""}}
        ) + max((estimate_tokens(x) for x in names), default=0)
        refs = [{"type": "tool_reference", "tool_name": x} for x in names[:SEARCH_RESULTS]]
        result = block_tokens({"type": "tool_search_tool_result", "content": refs})

        def in_prompt(k: int, calls: int) -> Decimal:
            """k tokens of the prompt of `calls` calls: written on the first, then read."""
            return k * (rates.cache_write_5m + rates.cache_read * (calls - 1)) if calls else ZERO

        deferred_usd = in_prompt(block_tokens(SEARCH_TOOL), n)
        for i, call in enumerate(range(0, n, CALLS_PER_SEARCH)):
            loaded = sum(sizes[i * SEARCH_RESULTS : (i + 1) * SEARCH_RESULTS])
            if not loaded:
                break
            added = query + result + loaded
            deferred_usd += query * rates.output + prompt * rates.cache_read
            deferred_usd += added * rates.input
            deferred_usd += in_prompt(added, n - call - 1)  # the calls after it
            prompt += added
        kept_usd = in_prompt(tokens, n)
        return cls(deferred_usd < kept_usd, tokens, kept_usd, deferred_usd)


class ServerStopped(Exception):
    """The server is gone (it failed to start, exited, or its connection broke)."""


def _one_line(exc: BaseException) -> str:
    """An exception (an ExceptionGroup from the SDK's task groups too) as one line."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = " ".join(str(exc).split()) or type(exc).__name__
    return printable(text[:300])


@dataclass
class _Job:
    tool: str
    arguments: dict[str, Any]
    done: asyncio.Future[Any]


@dataclass
class Link:
    """One server's connection, held by its own task (see the module doc)."""

    spec: McpServer
    timeout_s: float
    tools: list[dict[str, Any]] = field(default_factory=list)  # the server's own definitions
    stopped: str | None = None  # why the server is gone
    _jobs: asyncio.Queue[_Job | None] = field(default_factory=asyncio.Queue)
    _task: asyncio.Task[None] | None = None

    @property
    def transport(self) -> str:
        return "stdio" if self.spec.command else "http"

    async def start(self) -> None:
        """Connect and list the tools; ServerStopped with the reason when it cannot."""
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._hold(ready), name=f"mcp-{self.spec.name}")
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await asyncio.shield(ready)
        except TimeoutError:
            self.close()
            raise ServerStopped(f"did not answer within {START_TIMEOUT_S:g}s") from None

    async def call(self, tool: str, arguments: dict[str, Any]) -> Any:
        if self.stopped is not None:
            raise ServerStopped(self.stopped)
        job = _Job(tool, arguments, asyncio.get_running_loop().create_future())
        await self._jobs.put(job)
        return await job.done

    def close(self) -> None:
        """Stop the connection (a stdio server's process ends with it)."""
        if self._task is not None and not self._task.done():
            self._jobs.put_nowait(None)
            self._task.cancel()

    async def _hold(self, ready: asyncio.Future[None]) -> None:
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters, stdio_client

        spec = self.spec
        # The server's stderr is kept off the screen; its last line explains a failure.
        errlog = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        pending: _Job | None = None
        try:
            if spec.command is not None:
                params = StdioServerParameters(
                    command=spec.command, args=list(spec.args), env=dict(spec.env) or None
                )
                server: Any = stdio_client(params, errlog=errlog)  # its stderr off the screen
            else:
                server = spec.url
            async with Client(server, read_timeout_seconds=self.timeout_s) as client:
                self.tools = await _list_tools(client)
                ready.set_result(None)
                while (job := await self._jobs.get()) is not None:
                    pending = job
                    try:
                        result = await client.call_tool(job.tool, job.arguments)
                    except Exception as exc:  # the call failed; the connection may live on
                        if _closed(exc):
                            raise ServerStopped("its connection closed (it exited?)") from exc
                        if not job.done.done():
                            job.done.set_exception(exc)
                    else:
                        if not job.done.done():
                            job.done.set_result(result)
                    pending = None
                raise ServerStopped("closed")
        except BaseException as exc:
            why = self.stopped = _why_stopped(exc, errlog)
            if not ready.done():
                ready.set_exception(ServerStopped(why))
            for job in [pending, *_drain(self._jobs)]:
                if job is not None and not job.done.done():
                    job.done.set_exception(ServerStopped(why))
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                raise
        finally:
            errlog.close()


def _closed(exc: BaseException) -> bool:
    """The SDK's error for a connection that closed under a call (the server exited)."""
    from mcp.shared.exceptions import MCPError
    from mcp_types.jsonrpc import CONNECTION_CLOSED

    return isinstance(exc, MCPError) and exc.error.code == CONNECTION_CLOSED


def _drain(jobs: asyncio.Queue[_Job | None]) -> list[_Job | None]:
    out = []
    while not jobs.empty():
        out.append(jobs.get_nowait())
    return out


def _why_stopped(exc: BaseException, errlog: Any) -> str:
    why = "closed" if isinstance(exc, asyncio.CancelledError) else _one_line(exc)
    with contextlib.suppress(OSError, ValueError):
        errlog.seek(0)
        last = [ln.strip() for ln in errlog.read()[-4000:].splitlines() if ln.strip()]
        if last and not isinstance(exc, asyncio.CancelledError):
            why += f" (its last words: {printable(last[-1][:200])})"
    return why


async def _list_tools(client: Any) -> list[dict[str, Any]]:
    """Every tool the server offers, page by page (at most 100 pages)."""
    tools: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        page = await client.list_tools(cursor=cursor)
        for t in page.tools:
            tools.append(
                {
                    "name": t.name,
                    "description": t.description or "",
                    "input_schema": t.input_schema or {"type": "object"},
                }
            )
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _result_text(result: Any) -> tuple[str, bool]:
    """A CallToolResult as text for the model, and whether it is an error."""
    parts = []
    for block in result.content or []:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind == "image":
            parts.append(f"[an image, {getattr(block, 'mime_type', 'of unknown type')}]")
        elif kind == "resource":
            res = block.resource
            parts.append(getattr(res, "text", None) or f"[a resource: {getattr(res, 'uri', '')}]")
        else:
            parts.append(f"[{kind or 'unknown'} content]")
    if not parts and result.structured_content is not None:
        parts.append(str(result.structured_content))
    return "\n".join(parts), bool(result.is_error)


class McpTools:
    """A session's MCP servers: started before its first message, their tools in the
    toolbox while they live, what their definitions cost after each call."""

    def __init__(
        self,
        settings: Settings,
        toolbox: Toolbox,
        place: Place,
        pricer: Pricer,
        *,
        system_prompt: str = "",
    ) -> None:
        self.settings = settings
        self.system_prompt = system_prompt  # what the deferral rule's prompt holds
        self.toolbox = toolbox
        self.place = place  # where its records go
        self.pricer = pricer
        tools = settings.tools
        self.allow_all = tools.allow_mcp
        self.specs = list(tools.mcp_servers)
        self.timeout_s = tools.command_timeout_s
        self.links: dict[str, Link] = {}
        self.started = False
        self.session_usd: dict[str, Decimal] = {}
        self.deferral: Deferral | None = None  # decided as the servers start

    def _offered(self, spec: McpServer, asks: bool) -> bool:
        """Headless (no approval hook: not `asks`), a server's tools are offered only with
        `allow` or `--allow-mcp`: the flag is the approval, as --allow-commands is for
        commands."""
        return asks or spec.allow or self.allow_all

    async def start(self, *, asks: bool) -> AsyncGenerator[Event, None]:
        """Start every server (once): its tools join the toolbox; one that fails is a
        notice of one line. Yields the notices and the `mcp` records. `asks`: the face asks
        before each call (the app's approval hook)."""
        if self.started:
            return
        self.started = True
        started: list[Link] = []
        for spec in self.specs:
            if not self._offered(spec, asks):
                yield Notice(
                    f"MCP server {spec.name}: its tools are not offered headless without "
                    "--allow-mcp (or `allow = true` in its config)",
                    "warning",
                )
                continue
            link = Link(spec, self.timeout_s)
            try:
                await link.start()
            except ServerStopped as exc:
                yield self._record(link, "failed", str(exc))
                yield Notice(
                    f"MCP server {spec.name} failed to start: {exc}; the session goes on "
                    "without its tools",
                    "warning",
                )
                continue
            self.links[spec.name] = link
            for definition in link.tools:
                self.toolbox.add(self._tool(link, definition))
            started.append(link)
        notice = self._decide(started)
        for link in started:
            yield self._record(link, "started")
        if notice is not None:
            yield notice

    def _decide(self, started: list[Link]) -> Notice | None:
        """Whether the definitions go through tool search (see `Deferral`), and the line
        that says so; nothing is said below the threshold."""
        definitions = [self._definition(link, d) for link in started for d in link.tools]
        tokens = sum(block_tokens(d) for d in definitions)
        above = self.settings.tools.mcp_defer_above
        if not definitions or tokens < above:
            return None
        what = (
            f"MCP: {len(definitions)} tool definitions ({tokens:,} tokens a call, "
            f"over mcp_defer_above {above:,})"
        )
        router = self.settings.router
        models = {router.model_for(t) for t in TIERS}
        unable = sorted(m for m in models if not takes_tool_search(m))
        if unable:
            return Notice(f"{what} stay in the prompt: {unable[0]} has no tool search", "warning")
        tier = router.tier if router.tier in TIERS else "balanced"  # "auto": the middle one
        rates = self.pricer.rates(router.model_for(tier))
        builtin = [t for t in self.toolbox.definitions() if server_of(t.get("name", "")) is None]
        prompt = estimate_request_tokens(
            {"system": self.system_prompt, "tools": [*builtin, SEARCH_TOOL], "messages": []}
        )
        self.deferral = Deferral.weigh(definitions, prompt, rates)
        if self.deferral.defer:
            return Notice(f"{what} go through the API's tool search: {self.deferral.reason}")
        return Notice(f"{what} stay in the prompt: {self.deferral.reason}")

    @property
    def deferred(self) -> bool:
        return self.deferral is not None and self.deferral.defer

    def offered(
        self, tools: list[dict[str, Any]], messages: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The request's tools and messages as sent: when deferred, the MCP definitions
        marked `defer_loading` beside the search tool, and any reference to a tool the
        request does not defer left out of the messages (the API refuses it)."""
        if self.deferred:
            tools = [
                {**t, "defer_loading": True} if server_of(t.get("name", "")) else t for t in tools
            ]
            at = next((i for i, t in enumerate(tools) if deferred(t)), len(tools))
            tools = [*tools[:at], SEARCH_TOOL, *tools[at:]]
        definable = {str(t.get("name")) for t in tools if deferred(t)}
        return tools, _without_dangling(messages, definable)

    def _record(self, link: Link, status: str, error: str = "") -> McpStateChanged:
        defs = [self._definition(link, d) for d in link.tools]
        deferral = self.deferral if status == "started" else None
        return McpStateChanged(
            self.place.write(
                McpServerState(
                    server=link.spec.name,
                    transport=link.transport,
                    status=status,
                    tools=len(defs),
                    definition_tokens=sum(block_tokens(d) for d in defs),
                    error=error or None,
                    deferred=deferral.defer if deferral is not None else None,
                    deferral=deferral.reason if deferral is not None else None,
                )
            )
        )

    @staticmethod
    def _definition(link: Link, d: dict[str, Any]) -> dict[str, Any]:
        """A server's tool as the model is offered it: its name and description say whose."""
        name = link.spec.name
        return {
            "name": tool_name(name, d["name"]),
            "description": f"[MCP server {name}] {d['description']}",
            "input_schema": d["input_schema"],
        }

    def _tool(self, link: Link, definition: dict[str, Any]) -> Tool:
        own = definition["name"]
        shown = self._definition(link, definition)

        async def called(out: EventStream[ToolOutput], args: dict[str, Any]) -> Steps:
            try:
                async with asyncio.timeout(self.timeout_s + 5):
                    result = await link.call(own, args)
            except ServerStopped as exc:
                yield self._gone(link, str(exc))
                error = f"error: MCP server {link.spec.name} stopped: {exc}"
                out.set_result(ToolOutput(error, True))
                return
            except TimeoutError:
                out.set_result(ToolOutput(f"error: {shown['name']} did not answer in time", True))
                return
            except Exception as exc:
                error = f"error: {shown['name']} failed: {_one_line(exc)}"
                out.set_result(ToolOutput(error, True))
                return
            text, is_error = _result_text(result)
            out.set_result(ToolOutput(text if not is_error else f"error: {text}", is_error))

        def stream(args: dict[str, Any]) -> EventStream[ToolOutput]:
            """The call's events (a server found gone), then its output."""
            return EventStream(lambda out: called(out, args))

        async def run(args: dict[str, Any]) -> str:
            call = stream(args)
            async for _ in call:
                pass
            return call.result().text

        return Tool(
            shown["name"],
            shown["description"],
            shown["input_schema"],
            run,
            needs_approval=not (link.spec.allow or self.allow_all),
            deadline_s=self.timeout_s + 10,
            stream=stream,
        )

    def _gone(self, link: Link, why: str) -> Event:
        """A server died: its tools leave the toolbox; one line says so."""
        name = link.spec.name
        for tool in [t for t in self.toolbox.tools if server_of(t) == name]:
            del self.toolbox.tools[tool]
        if self.links.pop(name, None) is not None:
            link.close()
            self._record(link, "stopped", why)
            return Notice(
                f"MCP server {name} stopped: {why}; its tools are gone, the session goes on",
                "warning",
            )
        return Notice(f"MCP server {name} is gone: {why}", "warning")

    def check(self) -> list[Event]:
        """Servers found dead between calls: their tools go before the next request."""
        return [
            self._gone(link, link.stopped) for link in list(self.links.values()) if link.stopped
        ]

    def _shares(self, block: dict[str, Any], request: dict[str, Any]) -> dict[str, int]:
        """The tokens of a request (or answer) block that are MCP definitions, by server: a
        definition in the prompt, the search tool (its tokens shared by the servers), or the
        definitions a search's references load."""
        if block.get("type") == SEARCH_TOOL["type"]:
            servers = sorted({s for t in self.toolbox.tools if (s := server_of(t)) is not None})
            n = block_tokens(block)
            return {
                s: n // len(servers) + (1 if i < n % len(servers) else 0)
                for i, s in enumerate(servers)
            }
        if "input_schema" in block:
            server = server_of(str(block.get("name", "")))
            return {server: block_tokens(block)} if server is not None else {}
        out: dict[str, int] = {}
        for name in references(block):
            server = server_of(name)
            if server is not None:
                one = {
                    "type": "tool_result",
                    "content": [{"type": "tool_reference", "tool_name": name}],
                }
                out[server] = out.get(server, 0) + loaded_tokens(one, request)
        return out

    def costs(
        self, turn: Turn, request: dict[str, Any], answer: list[dict[str, Any]]
    ) -> McpCostNoted | None:
        """What each server's definitions took in a call and cost at its rates: by where
        they sat in its prompt (read from the cache, written to it or sent uncached), and
        what a search in its answer loaded (uncached input)."""
        rates = self.pricer.rates(turn.priced_as or turn.model)
        u = turn.usage
        read_end = u.cache_read_input_tokens
        write_end = read_end + u.cache_creation_input_tokens
        write_rate = (
            rates.cache_write_1h if u.cache_creation_1h_input_tokens else rates.cache_write_5m
        )
        at = REQUEST_OVERHEAD
        tokens: dict[str, int] = {}
        cost: dict[str, Decimal] = {}

        def add(server: str, k: int, usd: Decimal) -> None:
            tokens[server] = tokens.get(server, 0) + k
            cost[server] = cost.get(server, ZERO) + usd

        for block, n in request_blocks(request):
            for server, k in self._shares(block, request).items():
                read = max(0, min(at + n, read_end) - at)
                written = max(0, min(at + n, write_end) - max(at, read_end))
                plain = n - read - written
                usd = rates.cache_read * read + write_rate * written + rates.input * plain
                add(server, k, usd * k / n if n else ZERO)
            at += n
        for block in answer:
            for server, k in self._shares(block, request).items():
                add(server, k, rates.input * k)
        if not tokens:
            return None
        for server, usd in cost.items():
            self.session_usd[server] = self.session_usd.get(server, Decimal(0)) + usd
        return McpCostNoted(
            self.place.write(
                McpCost(
                    turn=turn.turn,
                    tokens=tokens,
                    cost_usd=cost,
                    session_cost_usd={s: self.session_usd[s] for s in cost},
                )
            )
        )

    def close(self) -> None:
        for link in self.links.values():
            link.close()
        self.links.clear()


def _without_dangling(messages: list[dict[str, Any]], definable: set[str]) -> list[dict[str, Any]]:
    """The messages with every tool reference to a tool outside `definable` left out; the
    same list when there is none (the usual case: nothing is copied)."""

    def dangling(block: Any) -> bool:
        return any(name not in definable for name in references(block))

    if not any(dangling(b) for m in messages for b in _blocks(m)):
        return messages
    out = []
    for m in messages:
        if not any(dangling(b) for b in _blocks(m)):
            out.append(m)
            continue
        content = []
        for b in _blocks(m):
            if dangling(b):
                b = _keep_references(b, definable)
            content.append(b)
        out.append({**m, "content": content})
    return out


def _keep_references(block: dict[str, Any], definable: set[str]) -> dict[str, Any]:
    def keep(ref: Any) -> bool:
        return not (isinstance(ref, dict) and ref.get("type") == "tool_reference") or (
            ref.get("tool_name") in definable
        )

    content = block.get("content")
    if block.get("type") == "tool_search_tool_result" and isinstance(content, dict):
        refs = [r for r in content.get("tool_references") or [] if keep(r)]
        return {**block, "content": {**content, "tool_references": refs}}
    return {**block, "content": [r for r in content or [] if keep(r)]}


def _blocks(message: dict[str, Any]) -> list[Any]:
    content = message.get("content")
    return content if isinstance(content, list) else []
