"""What the console's page routers share: the app's `Console` and the request's `Auth`
reached through FastAPI dependencies (as `host.http_deps` does for the API), and the checks
several pages make on the agent, id and event store a link names.

Every console route takes `Authed`: the API key header, or the session of ``/login`` with
its CSRF token on state changes (`host.console.auth.authenticate`); the route walk of
tests/console/test_console_hardening.py sees a route that forgets it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse

from host.agents import AgentManager
from host.http_manage import character_name

from .auth import Auth, authenticate
from .inputs import as_uuid
from .records import event_store
from .state import Console, Picked

if TYPE_CHECKING:
    from contracts.eventstore import EventStore

__all__ = [
    "NO_STORE",
    "Authed",
    "ConsoleDep",
    "LatestRoom",
    "NamedRoom",
    "Recorded",
    "console_auth",
    "get_console",
    "known",
    "not_found",
    "recorded",
]

NO_STORE = "No event store: enable the audit plugin to record what agents see and do."

# coroutines although none awaits: FastAPI runs a plain function in its thread pool


async def get_console(request: Request) -> Console:
    """The app's console (set by `host.console.routes.mount_console`)."""
    console: Console = request.app.state.console
    return console


ConsoleDep = Annotated[Console, Depends(get_console)]


async def console_auth(request: Request, console: ConsoleDep) -> Auth:
    """Let the request in or raise `LoginRequired` / `Refused` (their handlers answer)."""
    return authenticate(request, console.sessions)


Authed = Annotated[Auth, Depends(console_auth)]


async def named_room(
    console: ConsoleDep, _found: Authed, agent: str = "", room: str = ""
) -> Picked:
    """The agent and room of the page's picker (``?agent=&room=``); no room when none is
    named (the chat page starts a new one)."""
    return await console.pick(agent, room, first_room=False)


async def latest_room(
    console: ConsoleDep, _found: Authed, agent: str = "", room: str = ""
) -> Picked:
    """The agent and room of the page's picker (``?agent=&room=``); the agent's most recent
    room when none is named (the memories and timeline pages show one)."""
    return await console.pick(agent, room, first_room=True)


NamedRoom = Annotated[Picked, Depends(named_room)]
LatestRoom = Annotated[Picked, Depends(latest_room)]


def known(agents: AgentManager, ref: str) -> str | None:
    """The name of the configured agent `ref` names (running or not), None if none does."""
    name = character_name(agents, ref)
    return name if any(c.name == name for c in agents.characters) else None


def not_found(agent: str, kind: str, ref: str) -> str:
    return f"No agent {agent!r} with a {kind} {ref!r} (a {kind} is named by its id)."


@dataclass(frozen=True, slots=True)
class Recorded:
    """A configured agent, an id of its (a message or a room) and the event store to read."""

    name: str
    ref: UUID
    store: EventStore


async def recorded(
    console: Console, request: Request, found: Auth, agent: str, kind: str, ref: str
) -> Recorded | HTMLResponse:
    """What a page over the event store reads, or the fragment saying why it cannot: no such
    agent or id (404), or no event store at all."""
    name, ref_id = known(console.agents, agent), as_uuid(ref)
    if name is None or ref_id is None:
        return console.problem(request, found, not_found(agent, kind, ref))
    store = await event_store(console.host)
    if store is None:
        return console.render(request, found, "_problem.html", problem=NO_STORE)
    return Recorded(name, ref_id, store)
