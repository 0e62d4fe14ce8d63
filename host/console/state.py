"""The console's state, one per app: sessions, chat turns waiting for their stream, metrics
history, the room index and the templates, with the rendering every page shares."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from uuid import UUID

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from host.agents import AgentManager
from host.runtime import AgentRuntime
from host.secrets import scrub

from .auth import CSRF_HEADER, SESSION_COOKIE, Auth, Sessions
from .charts import History
from .headers import root_of, route_path
from .inputs import as_uuid
from .mount import Unpicked
from .rooms import RoomIndex

if TYPE_CHECKING:
    import jinja2

    from host.app import Host

__all__ = ["Console", "Picked", "Turn", "set_cookie"]

_HERE = Path(__file__).parent


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


def set_cookie(response: Response, session_id: str) -> None:
    """Give the browser its console session (not readable by scripts, never sent cross-site)."""
    response.set_cookie(
        SESSION_COOKIE, session_id, httponly=True, samesite="strict", path="/", max_age=12 * 3600
    )


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
            path=route_path(request.scope),
            root=root_of(request),
            **context,
        )
        response = HTMLResponse(page, status_code=status)
        if auth.new and auth.session is not None:
            set_cookie(response, auth.session.id)
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
        named; the most recent room when none is (and `first_room`), else None (a new room).
        `Unpicked` when the page names an agent that does not run or a room that is no id:
        showing another agent's conversation instead would mislead."""
        running = self.agents.running
        runtime = self.runtime(agent) if agent else (running[0] if running else None)
        if agent and runtime is None:
            names = ", ".join(r.name for r in running) or "none"
            raise Unpicked(f"No running agent {agent!r} (running: {names}).", 404)
        room_id = as_uuid(room)
        if room and room_id is None:
            raise Unpicked(f"Room {room!r} is not a room id (a UUID).", 422)
        rooms = await self.rooms.rooms(runtime) if runtime is not None else []
        if room_id is None and first_room and rooms:
            room_id = rooms[0].room_id
        return Picked(runtime, room_id, {"running": running, "rooms": rooms})
