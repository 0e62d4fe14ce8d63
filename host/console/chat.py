"""The chat page (``/``, ``/console/chat``): the room's recent messages, sending a message,
the reply streamed over server-sent events, and what the agent saw for a reply."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4, uuid5

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from loguru import logger
from markupsafe import Markup, escape
from sse_starlette import EventSourceResponse

from contracts.agent import Reply
from contracts.errors import AgentHostError
from contracts.memory import MemoryQuery
from host.runtime import AgentRuntime, agent_id_for
from host.secrets import scrub

from .auth import Auth
from .deps import Authed, ConsoleDep, NamedRoom, recorded
from .headers import root_of
from .inputs import as_uuid, read_form
from .records import flush_trail, what_the_agent_saw
from .state import Console, Turn

__all__ = ["HISTORY", "router"]

_log = logger.bind(component="console")
HISTORY = 30
"""Messages of the room shown above the chat box."""

router = APIRouter(include_in_schema=False)


@router.get("/")
@router.get("/console/chat")
async def chat(
    request: Request, console: ConsoleDep, found: Authed, picked: NamedRoom
) -> HTMLResponse:
    runtime, room_id = picked.runtime, picked.room
    history = []
    if runtime is not None and room_id is not None:
        history = await _history(runtime, room_id)
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
async def send(request: Request, console: ConsoleDep, found: Authed) -> HTMLResponse:
    form = await read_form(request)
    text = form.get("text", "").strip()
    runtime = console.runtime(form.get("agent", ""))
    if runtime is None or not text:
        problem = "Pick a running agent." if runtime is None else "Type a message first."
        return console.render(request, found, "_problem.html", status=422, problem=problem)
    room = as_uuid(form.get("room")) or uuid4()
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
async def stream(
    request: Request, console: ConsoleDep, found: Authed, turn_id: str
) -> EventSourceResponse:
    turn = console.turns.get(turn_id)
    mine = turn is not None and turn.session == (found.session.id if found.session else None)
    if turn is None or not mine:
        return EventSourceResponse(_done())  # a reconnect after the reply: just close
    del console.turns[turn_id]
    return EventSourceResponse(_reply_events(console, found, turn, root_of(request)))


@router.get("/console/agents/{agent}/saw/{message_id}")
async def saw(
    request: Request, console: ConsoleDep, found: Authed, agent: str, message_id: str
) -> HTMLResponse:
    target = await recorded(console, request, found, agent, "message", message_id)
    if isinstance(target, HTMLResponse):
        return target
    await flush_trail(console.host)
    record = await what_the_agent_saw(target.store, agent_id_for(target.name), target.ref)
    return console.render(request, found, "_saw.html", saw=record)


async def _history(runtime: AgentRuntime, room_id: UUID) -> list[dict[str, Any]]:
    """The room's last `HISTORY` messages with text, oldest first, as the chat page shows them."""
    rows = await runtime.database.get_memories(
        MemoryQuery(
            agent_id=runtime.agent_id,
            room_id=room_id,
            order="desc",
            limit=HISTORY,
            with_embeddings=False,
        )
    )
    return [
        {
            "who": runtime.name if m.entity_id == runtime.agent_id else _sender(m),
            "text": m.content.text,
            "mine": m.entity_id == runtime.agent_id,
            # stored data: only an id goes into the link
            "reply_to": as_uuid(str((m.content.model_extra or {}).get("in_reply_to", ""))),
        }
        for m in reversed(rows)
        if m.content.text
    ]


def _sender(memory: Any) -> str:
    name = (memory.content.model_extra or {}).get("name")
    return str(name) if name else "user"


async def _done() -> AsyncIterator[dict[str, str]]:
    yield {"event": "done", "data": ""}


async def _reply_events(
    console: Console, found: Auth, turn: Turn, root: str
) -> AsyncIterator[dict[str, str]]:
    """The reply to `turn`: ``chunk`` events (escaped text) as the model streams, then
    ``reply`` (actions, timings, the link to what the agent saw, under `root`), then ``done``."""
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
            trace = None if isinstance(exc, AgentHostError | TimeoutError) else exc  # named: a line
            _log.opt(exception=trace).warning("console reply failed: {}", scrub(str(exc)))
            problem = console.why("The reply failed", exc)
        finally:
            await stream.aclose()
    template = console.env.get_template("_reply.html")
    agent = runtime.agent_id if runtime is not None else turn.agent
    html = template.render(
        reply=reply, problem=problem, agent=agent, name=turn.agent, csrf=found.csrf, root=root
    )
    yield {"event": "reply", "data": str(Markup(html))}
    yield {"event": "done", "data": ""}
