"""The console's pages and fragments: server-rendered Jinja2, driven by htmx.

Every route here goes through `authenticate` (API key header, or the session of ``/login``;
CSRF token on state changes). Templates autoescape everything they render: memories,
characters, plugin errors and model text are shown as text, never as markup.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlencode
from uuid import UUID, uuid4, uuid5

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from loguru import logger
from markupsafe import Markup, escape
from sse_starlette import EventSourceResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.agent import Reply
from contracts.memory import Cursor, InvalidCursorError, MemoryQuery
from contracts.models import TEXT_EMBEDDING, EmbeddingParams, ModelError
from contracts.storage import SearchParams
from host.agents import AgentManager, UnknownAgentError
from host.http_manage import character_name, delete_memory, delete_room_memories
from host.runtime import AgentRuntime, agent_id_for
from host.secrets import scrub

from .auth import (
    CSRF_HEADER,
    SESSION_COOKIE,
    Auth,
    LoginRequired,
    Refused,
    Sessions,
    authenticate,
    check_host,
    check_origin,
    key_matches,
)
from .charts import History, figures
from .records import (
    EVENT_TYPES,
    event_store,
    flush_trail,
    replay_room,
    room_timeline,
    summarize,
    what_the_agent_saw,
)
from .rooms import RoomIndex

if TYPE_CHECKING:
    import jinja2

    from host.app import Host

__all__ = ["mount_console"]

_HERE = Path(__file__).parent
_log = logger.bind(component="console")
PAGE_SIZE = 20
HISTORY = 30
"""Messages of the room shown above the chat box."""


SECURITY_HEADERS = {
    # scripts, styles and connections from this host only, no inline script, no framing: an
    # injected tag could neither run nor load anything, and no other site can overlay the
    # console's buttons
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none';"
        " object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@dataclass(frozen=True, slots=True)
class Turn:
    """A message sent from the chat page, waiting for its stream to be opened."""

    session: str | None
    agent: str
    room: UUID
    text: str


@dataclass(frozen=True, slots=True)
class Picked:
    runtime: AgentRuntime | None
    room: UUID | None
    context: dict[str, Any]
    """What the picker template needs besides them (running agents, the agent's rooms)."""


def _environment() -> jinja2.Environment:
    import jinja2  # at the first page, not at start-up

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,  # every template, whatever its name: stored text is never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ms"] = lambda seconds: f"{float(seconds) * 1000:.1f} ms"
    env.filters["short"] = lambda value: str(value)[:8]
    # one path segment of a link: "/", "?", "#", ".." in a name cannot move it elsewhere
    env.filters["segment"] = lambda value: quote(str(value), safe="")
    return env


class Console:
    """The console's state: sessions, chat turns waiting for their stream, metrics history."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.sessions = Sessions(bound=host.config.http.host)
        self.turns: dict[str, Turn] = {}
        self.history = History()
        self.rooms = RoomIndex(host.events)

    @cached_property
    def env(self) -> jinja2.Environment:
        """The templates, loaded at the first page rather than at start-up."""
        return _environment()

    @property
    def agents(self) -> AgentManager:
        assert self.host.agents is not None  # the console is mounted with the HTTP API
        return self.host.agents

    def render(
        self, request: Request, auth: Auth, name: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        page = self.env.get_template(name).render(
            csrf=auth.csrf,
            csrf_header=CSRF_HEADER,
            logout=request.app.state.api_key is not None and auth.session is not None,
            path=request.url.path,
            **context,
        )
        response = HTMLResponse(page, status_code=status)
        if auth.new and auth.session is not None:
            _set_cookie(response, auth.session.id)
        return response

    def problem(self, request: Request, auth: Auth, text: str, status: int = 404) -> HTMLResponse:
        """A fragment saying what is wrong (htmx swaps 4xx answers in, see base.html)."""
        return self.render(request, auth, "_problem.html", status=status, problem=text)

    def why(self, what: str, exc: BaseException) -> str:
        """``what: the error``, with the configured secrets masked (an error may quote a DSN
        or a key; the page is outside the log scrubbing)."""
        return scrub(f"{what}: {exc}")

    def runtime(self, ref: str) -> AgentRuntime | None:
        return self.agents.find(ref) if ref else None

    async def pick(self, agent: str, room: str, *, first_room: bool) -> Picked:
        """The agent and room a page's picker names: the first running agent when none is
        named; the most recent room when none is (and `first_room`), else None (a new room)."""
        running = self.agents.running
        runtime = self.runtime(agent) or (running[0] if running else None)
        rooms = await self.rooms.rooms(runtime) if runtime is not None else []
        room_id = _uuid(room)
        if room_id is None and first_room and rooms:
            room_id = rooms[0].room_id
        return Picked(runtime, room_id, {"running": running, "rooms": rooms})


def _set_cookie(response: Response, session_id: str) -> None:
    response.set_cookie(
        SESSION_COOKIE, session_id, httponly=True, samesite="strict", path="/", max_age=12 * 3600
    )


async def _form(request: Request) -> dict[str, str]:
    """An url-encoded form body (what htmx and plain forms post), last value of each field."""
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}


def _uuid(text: str | None) -> UUID | None:
    try:
        return UUID(text) if text else None
    except ValueError:
        return None


def console_path(path: str) -> bool:
    """Whether `path` is the console's (pages, fragments, assets, log in and out)."""
    return path in ("/", "/login", "/logout") or path.startswith("/console/")


class SecurityHeaders:
    """Adds `SECURITY_HEADERS` to every response of the console's paths (pages, fragments,
    redirects, refusals, streams, assets), whichever code path made it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not console_path(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)


def mount_console(app: FastAPI, host: Host) -> None:
    """Serve the console on `app`: ``/`` (chat), ``/console/*`` pages and fragments, and
    ``/console/static`` (vendored htmx; public, it holds no data)."""
    console = Console(host)
    app.state.console = console
    app.add_middleware(SecurityHeaders)
    app.mount("/console/static", StaticFiles(directory=_HERE / "static"), name="console-static")
    app.include_router(_router(console))

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _exc: Exception) -> Response:
        stream = request.url.path.startswith("/console/stream/")  # an EventSource
        fragment = request.headers.get("hx-request") or stream
        if fragment or request.method != "GET":
            return JSONResponse(
                {"detail": "log in to the console (or send the API key)"},
                status_code=401,
                headers={"HX-Redirect": "/login"},
            )
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Exception) -> Response:
        """403: a fragment saying why for htmx (it swaps 4xx answers in, escaped like every
        value: the reason may quote a request header), JSON for anything else."""
        if request.headers.get("hx-request"):
            return console.problem(request, Auth(None), str(exc), status=403)
        return JSONResponse({"detail": str(exc)}, status_code=403)


def _router(console: Console) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    agents = console.agents

    def auth(request: Request) -> Auth:
        return authenticate(request, console.sessions)

    # ---------------------------------------------------------------- login

    @router.get("/login")
    async def login_page(request: Request, next: str = "/") -> Response:
        if request.app.state.api_key is None:  # nothing to log in to
            return RedirectResponse(_local(next), status_code=303)
        return console.render(
            request, Auth(None), "login.html", next=_local(next), error=None, need_key=True
        )

    @router.post("/login")
    async def login(request: Request) -> Response:
        check_origin(request)
        expected: str | None = request.app.state.api_key
        if expected is None:
            check_host(request, console.sessions.bound)
        form = await _form(request)
        target = _local(form.get("next", "/"))
        if expected is not None and not key_matches(expected, form.get("api_key")):
            return console.render(
                request,
                Auth(None),
                "login.html",
                status=401,
                next=target,
                error="That is not the API key of this host.",
                need_key=True,
            )
        # a session id the browser held before is never carried over (no session fixation)
        console.sessions.drop(request.cookies.get(SESSION_COOKIE))
        session = console.sessions.new()
        response = RedirectResponse(target, status_code=303)
        _set_cookie(response, session.id)
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        found = auth(request)
        if found.session is not None:
            console.sessions.drop(found.session.id)
        response: Response
        if request.headers.get("hx-request"):  # htmx follows the header, not a redirect
            response = Response(status_code=200, headers={"HX-Redirect": "/login"})
        else:
            response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # ---------------------------------------------------------------- chat

    @router.get("/")
    @router.get("/console/chat")
    async def chat(request: Request, agent: str = "", room: str = "") -> HTMLResponse:
        found = auth(request)
        picked = await console.pick(agent, room, first_room=False)
        runtime, room_id = picked.runtime, picked.room
        history = []
        if runtime is not None and room_id is not None:
            rows = await runtime.database.get_memories(
                MemoryQuery(
                    agent_id=runtime.agent_id,
                    room_id=room_id,
                    order="desc",
                    limit=HISTORY,
                    with_embeddings=False,
                )
            )
            history = [
                {
                    "who": runtime.name if m.entity_id == runtime.agent_id else _sender(m),
                    "text": m.content.text,
                    "mine": m.entity_id == runtime.agent_id,
                    # stored data: only an id goes into the link
                    "reply_to": _uuid(str((m.content.model_extra or {}).get("in_reply_to", ""))),
                }
                for m in reversed(rows)
                if m.content.text
            ]
        return console.render(
            request,
            found,
            "chat.html",
            runtime=runtime,
            room=room_id,
            history=history,
            **picked.context,
        )

    @router.post("/console/chat/send")
    async def send(request: Request) -> HTMLResponse:
        found = auth(request)
        form = await _form(request)
        text = form.get("text", "").strip()
        runtime = console.runtime(form.get("agent", ""))
        if runtime is None or not text:
            problem = "Pick a running agent." if runtime is None else "Type a message first."
            return console.render(request, found, "_problem.html", status=422, problem=problem)
        room = _uuid(form.get("room")) or uuid4()
        turn_id = secrets.token_urlsafe(16)
        if len(console.turns) > 1000:  # streams never opened
            console.turns.pop(next(iter(console.turns)))
        console.turns[turn_id] = Turn(
            found.session.id if found.session else None, runtime.name, room, text[:100_000]
        )
        return console.render(
            request, found, "_turn.html", turn=turn_id, text=text, runtime=runtime, room=room
        )

    @router.get("/console/stream/{turn_id}")
    async def stream(request: Request, turn_id: str) -> EventSourceResponse:
        found = auth(request)
        turn = console.turns.get(turn_id)
        mine = turn is not None and turn.session == (found.session.id if found.session else None)
        if turn is None or not mine:
            return EventSourceResponse(_done())  # a reconnect after the reply: just close
        del console.turns[turn_id]
        return EventSourceResponse(_reply_events(console, request, found, turn))

    @router.get("/console/agents/{agent}/saw/{message_id}")
    async def saw(request: Request, agent: str, message_id: str) -> HTMLResponse:
        found = auth(request)
        name, message = _known(agents, agent), _uuid(message_id)
        if name is None or message is None:
            return console.problem(request, found, _not_found(agent, "message", message_id))
        store = await event_store(console.host)
        if store is None:
            return console.render(request, found, "_problem.html", problem=_NO_STORE)
        await flush_trail(console.host)
        record = await what_the_agent_saw(store, agent_id_for(name), message)
        return console.render(request, found, "_saw.html", saw=record)

    # ---------------------------------------------------------------- agents

    @router.get("/console/agents")
    async def agents_page(request: Request) -> HTMLResponse:
        found = auth(request)
        return console.render(request, found, "agents.html", cards=_cards(agents))

    @router.post("/console/agents/{agent}/{verb}")
    async def start_stop(request: Request, agent: str, verb: str) -> HTMLResponse:
        found = auth(request)
        try:
            if verb == "start":
                await agents.start(agent)
            elif verb == "stop":
                await agents.stop(agent)
            else:
                return console.render(
                    request, found, "_problem.html", status=404, problem=f"No action {verb!r}."
                )
        except UnknownAgentError as exc:
            return console.render(request, found, "_problem.html", status=404, problem=str(exc))
        except Exception as exc:  # its store or models could not be resolved, ...: say why
            _log.opt(exception=exc).warning("could not {} agent {}: {}", verb, agent, exc)
            why = console.why(f"Could not {verb} {character_name(agents, agent)}", exc)
            return console.problem(request, found, why, status=409)
        name = character_name(agents, agent)
        card = next(c for c in _cards(agents) if c["character"].name == name)
        return console.render(request, found, "_agent.html", card=card, announce=True)

    # ---------------------------------------------------------------- plugins

    @router.get("/console/plugins")
    async def plugins_page(request: Request) -> HTMLResponse:
        found = auth(request)
        return console.render(
            request, found, "plugins.html", rows=_plugin_rows(console.host), dev=_dev(console)
        )

    @router.post("/console/plugins/{name}/reload")
    async def reload(request: Request, name: str) -> HTMLResponse:
        found = auth(request)
        host = console.host
        if host.reloader is None:
            return console.render(
                request, found, "_problem.html", status=409, problem="Reload needs dev mode."
            )
        if name not in host.loader.loaded and name not in host.reloader.lost:
            return console.render(
                request, found, "_problem.html", status=404, problem=f"No loaded plugin {name}."
            )
        await host.reload_plugin(name)
        row = next(r for r in _plugin_rows(host) if r["name"] == name)
        return console.render(request, found, "_plugin.html", row=row, dev=True, announce=True)

    # ---------------------------------------------------------------- memories

    @router.get("/console/memories")
    async def memories_page(
        request: Request, agent: str = "", room: str = "", cursor: str = "", q: str = ""
    ) -> HTMLResponse:
        found = auth(request)
        picked = await console.pick(agent, room, first_room=True)
        runtime, room_id = picked.runtime, picked.room
        items: list[Any] = []
        hits: list[Any] | None = None
        next_cursor = problem = None
        if runtime is not None and room_id is not None:
            if q.strip():
                try:
                    hits = await _search(runtime, room_id, q.strip())
                except ModelError as exc:  # no embedding model, or it failed: list instead
                    problem = console.why("The search needs the agent's embedding model", exc)
            if hits is None:
                try:
                    after = Cursor.decode(cursor) if cursor else None
                except InvalidCursorError as exc:
                    after = None
                    problem = f"That page link is broken ({exc}); first page shown."
                rows = await runtime.database.get_memories(
                    MemoryQuery(
                        agent_id=runtime.agent_id,
                        room_id=room_id,
                        order="desc",
                        limit=PAGE_SIZE + 1,
                        after=after,
                        with_embeddings=False,
                    )
                )
                items = rows[:PAGE_SIZE]
                if len(rows) > PAGE_SIZE:
                    next_cursor = items[-1].cursor.encode()
        return console.render(
            request,
            found,
            "memories.html",
            runtime=runtime,
            room=room_id,
            **picked.context,
            items=items,
            hits=hits,
            q=q,
            first=not cursor,
            next_cursor=next_cursor,
            problem=problem,
        )

    @router.delete("/console/agents/{agent}/memories/{memory_id}")
    async def delete_one(request: Request, agent: str, memory_id: str) -> HTMLResponse:
        found = auth(request)
        runtime, memory = console.runtime(agent), _uuid(memory_id)
        if runtime is None or memory is None or not await delete_memory(runtime, memory):
            return console.render(
                request, found, "_problem.html", status=404, problem="No such memory (any more)."
            )
        return HTMLResponse("")

    @router.delete("/console/agents/{agent}/rooms/{room_id}/memories")
    async def delete_room(request: Request, agent: str, room_id: str) -> HTMLResponse:
        found = auth(request)
        runtime, room = console.runtime(agent), _uuid(room_id)
        if runtime is None:
            return console.render(
                request, found, "_problem.html", status=404, problem="That agent is not running."
            )
        if room is None:
            return console.problem(request, found, _not_found(agent, "room", room_id))
        count = await delete_room_memories(runtime, room)
        return console.render(request, found, "_deleted.html", count=count)

    # ---------------------------------------------------------------- timeline

    @router.get("/console/timeline")
    async def timeline_page(
        request: Request, agent: str = "", room: str = "", type: str = "", after: str = ""
    ) -> HTMLResponse:
        found = auth(request)
        picked = await console.pick(agent, room, first_room=True)
        runtime, room_id = picked.runtime, picked.room
        store = await event_store(console.host)
        page = problem = None
        version = _version(after)
        if version is None:
            version, problem = 0, "That page link is broken (after: no version); first page shown."
        if store is not None and runtime is not None and room_id is not None:
            await flush_trail(console.host)
            types = {type} if type in EVENT_TYPES else None
            page = await room_timeline(store, runtime.agent_id, room_id, types=types, after=version)
        return console.render(
            request,
            found,
            "timeline.html",
            runtime=runtime,
            room=room_id,
            **picked.context,
            types=EVENT_TYPES,
            type=type,
            page=page,
            after=version,
            problem=problem,
            no_store=store is None,
            dumps=_dumps,
            summary=summarize,
        )

    @router.post("/console/agents/{agent}/rooms/{room_id}/replay")
    async def replay(request: Request, agent: str, room_id: str) -> HTMLResponse:
        found = auth(request)
        name, room = _known(agents, agent), _uuid(room_id)
        if name is None or room is None:
            return console.problem(request, found, _not_found(agent, "room", room_id))
        store = await event_store(console.host)
        if store is None:
            return console.render(request, found, "_problem.html", problem=_NO_STORE)
        try:
            report = await replay_room(console.host, store, agent_id_for(name), room)
        except Exception as exc:
            _log.opt(exception=exc).warning("replay failed: {}", exc)
            return console.render(
                request, found, "_problem.html", problem=console.why("The replay failed", exc)
            )
        return console.render(request, found, "_replay.html", report=report)

    # ---------------------------------------------------------------- metrics

    @router.get("/console/metrics")
    async def metrics_page(request: Request) -> HTMLResponse:
        found = auth(request)
        data = figures(console.host.telemetry.memory, console.history)
        return console.render(request, found, "metrics.html", f=data)

    @router.get("/console/fragments/metrics")
    async def metrics_fragment(request: Request) -> HTMLResponse:
        found = auth(request)
        data = figures(console.host.telemetry.memory, console.history)
        return console.render(request, found, "_metrics.html", f=data)

    return router


_NO_STORE = "No event store: enable the audit plugin to record what agents see and do."


def _local(target: str) -> str:
    """`target` if it is a path on this server, else ``/`` (no open redirect from ``next``).

    Browsers read ``\\`` as ``/`` and drop tabs and newlines from URLs, so ``/\\evil.example``
    or ``/<tab>/evil.example`` would lead off-site: a target holding those is refused too."""
    if not target.startswith("/") or target.startswith("//"):
        return "/"
    if any(c == "\\" or ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return "/"
    return target


def _known(agents: AgentManager, ref: str) -> str | None:
    """The name of the configured agent `ref` names (running or not), None if none does."""
    name = character_name(agents, ref)
    return name if any(c.name == name for c in agents.characters) else None


def _not_found(agent: str, kind: str, ref: str) -> str:
    return f"No agent {agent!r} with a {kind} {ref!r} (a {kind} is named by its id)."


MAX_VERSION = 2**63 - 1
"""The largest version an event store holds (a signed 64-bit integer)."""


def _version(text: str) -> int | None:
    """The ``after`` of a timeline link: a version >= 0; None when it is not one."""
    text = text.strip()
    if not text:
        return 0
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    value = int(text)
    return value if value <= MAX_VERSION else None


def _sender(memory: Any) -> str:
    name = (memory.content.model_extra or {}).get("name")
    return str(name) if name else "user"


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=1, ensure_ascii=False, sort_keys=True)[:4000]


def _dev(console: Console) -> bool:
    return console.host.reloader is not None


def _cards(agents: AgentManager) -> list[dict[str, Any]]:
    return [
        {
            "character": c,
            "running": agents.find(c.name) is not None,
            "id": agent_id_for(c.name),
        }
        for c in agents.characters
    ]


def _plugin_rows(host: Host) -> list[dict[str, Any]]:
    rows = []
    history = host.reloader.history if host.reloader is not None else []
    for status in host.statuses:
        last = next((r for r in reversed(history) if r.name == status.name), None)
        refusal = host.reloader.refusal(status.name) if host.reloader is not None else None
        rows.append({**status.as_dict(), "last_reload": last, "refusal": refusal})
    return rows


async def _search(runtime: AgentRuntime, room_id: UUID, text: str) -> list[tuple[Any, float]]:
    """The room's memories nearest `text` (its embedding by the agent's embedding model)."""
    result = await runtime.use_model(TEXT_EMBEDDING, EmbeddingParams(text=text))
    query = MemoryQuery(agent_id=runtime.agent_id, room_id=room_id)
    return await runtime.database.search_memories(
        result.vector, query, SearchParams(k=PAGE_SIZE, with_embeddings=False)
    )


async def _done() -> AsyncIterator[dict[str, str]]:
    yield {"event": "done", "data": ""}


async def _reply_events(
    console: Console, request: Request, found: Auth, turn: Turn
) -> AsyncIterator[dict[str, str]]:
    """The reply to `turn`: ``chunk`` events (escaped text) as the model streams, then
    ``reply`` (actions, timings, the link to what the agent saw), then ``done``."""
    runtime = console.runtime(turn.agent)
    reply: Reply | None = None
    problem = None
    if runtime is None:
        problem = f"Agent {turn.agent} is not running."
    else:
        message = runtime.new_message(
            turn.text,
            room_id=turn.room,
            entity_id=uuid5(runtime.agent_id, "user:console"),
            name="console",
            source="console",
        )
        stream = runtime.stream_message(message)
        try:
            async for chunk in stream:
                yield {"event": "chunk", "data": str(escape(chunk))}
            reply = stream.reply
        except Exception as exc:
            _log.opt(exception=exc).warning("console reply failed: {}", exc)
            problem = console.why("The reply failed", exc)
        finally:
            await stream.aclose()
    template = console.env.get_template("_reply.html")
    agent = runtime.agent_id if runtime is not None else turn.agent
    html = template.render(
        reply=reply, problem=problem, agent=agent, name=turn.agent, csrf=found.csrf
    )
    yield {"event": "reply", "data": str(Markup(html))}
    yield {"event": "done", "data": ""}
