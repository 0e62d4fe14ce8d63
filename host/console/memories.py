"""The memories page: a room's memories a page at a time, searched by meaning with the
agent's embedding model, and deleting one memory or a whole room's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from contracts.memory import Cursor, InvalidCursorError, MemoryQuery
from contracts.models import TEXT_EMBEDDING, EmbeddingParams, ModelError
from contracts.storage import SearchParams
from host.http_manage import delete_memory, delete_room_memories
from host.runtime import AgentRuntime

from .deps import Authed, ConsoleDep, LatestRoom, not_found
from .inputs import as_uuid
from .state import Console

__all__ = ["PAGE_SIZE", "router"]

PAGE_SIZE = 20
router = APIRouter(include_in_schema=False)


@dataclass(slots=True)
class Listing:
    """What the page shows of a room: search hits, or a page of memories and the next one's
    cursor; `problem` says why the search or the page asked for was not shown."""

    items: list[Any] = field(default_factory=list)
    hits: list[Any] | None = None
    next_cursor: str | None = None
    problem: str | None = None


@router.get("/console/memories")
async def memories_page(
    request: Request,
    console: ConsoleDep,
    found: Authed,
    picked: LatestRoom,
    cursor: str = "",
    q: str = "",
) -> HTMLResponse:
    runtime, room_id = picked.runtime, picked.room
    shown = Listing()
    if runtime is not None and room_id is not None:
        shown = await _listing(console, runtime, room_id, cursor, q.strip())
    return console.render(
        request,
        found,
        "memories.html",
        runtime=runtime,
        room=room_id,
        **picked.context,
        items=shown.items,
        hits=shown.hits,
        q=q,
        first=not cursor,
        next_cursor=shown.next_cursor,
        problem=shown.problem,
    )


@router.delete("/console/agents/{agent}/memories/{memory_id}")
async def delete_one(
    request: Request, console: ConsoleDep, found: Authed, agent: str, memory_id: str
) -> HTMLResponse:
    runtime, memory = console.runtime(agent), as_uuid(memory_id)
    if runtime is None or memory is None or not await delete_memory(runtime, memory):
        return console.render(
            request, found, "_problem.html", status=404, problem="No such memory (any more)."
        )
    return HTMLResponse("")


@router.delete("/console/agents/{agent}/rooms/{room_id}/memories")
async def delete_room(
    request: Request, console: ConsoleDep, found: Authed, agent: str, room_id: str
) -> HTMLResponse:
    runtime, room = console.runtime(agent), as_uuid(room_id)
    if runtime is None:
        return console.render(
            request, found, "_problem.html", status=404, problem="That agent is not running."
        )
    if room is None:
        return console.problem(request, found, not_found(agent, "room", room_id))
    count = await delete_room_memories(runtime, room)
    return console.render(request, found, "_deleted.html", count=count)


async def _listing(
    console: Console, runtime: AgentRuntime, room_id: UUID, cursor: str, q: str
) -> Listing:
    """Search hits for `q`; a page of the room (from `cursor`) without `q` or when the search
    cannot run (no embedding model, or it failed)."""
    shown = Listing()
    if q:
        try:
            shown.hits = await _search(runtime, room_id, q)
            return shown
        except ModelError as exc:  # no embedding model, or it failed: list instead
            shown.problem = console.why("The search needs the agent's embedding model", exc)
    try:
        after = Cursor.decode(cursor) if cursor else None
    except InvalidCursorError as exc:
        after = None
        shown.problem = f"That page link is broken ({exc}); first page shown."
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
    shown.items = rows[:PAGE_SIZE]
    if len(rows) > PAGE_SIZE:
        shown.next_cursor = shown.items[-1].cursor.encode()
    return shown


async def _search(runtime: AgentRuntime, room_id: UUID, text: str) -> list[tuple[Any, float]]:
    """The room's memories nearest `text` (its embedding by the agent's embedding model)."""
    result = await runtime.use_model(TEXT_EMBEDDING, EmbeddingParams(text=text))
    query = MemoryQuery(agent_id=runtime.agent_id, room_id=room_id)
    return await runtime.database.search_memories(
        result.vector, query, SearchParams(k=PAGE_SIZE, with_embeddings=False)
    )
