"""``GET /agents/{agent}/rooms/{room_id}/memories``: a room's memories, paginated by cursor
(listing rooms and deleting memories: `host.http_manage`)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from contracts.memory import Cursor, InvalidCursorError, Memory, MemoryQuery, Order
from host.http_deps import Runtime

__all__ = ["CURSOR_PATTERN", "MemoryOut", "MemoryPage", "router"]

CURSOR_PATTERN = r"^[A-Za-z0-9_-]{32}$"
"""The shape of a memory cursor (`Cursor.encode`: 24 bytes, URL-safe base64 unpadded)."""

router = APIRouter(tags=["memories"])


class MemoryOut(BaseModel):
    id: UUID
    agent_id: UUID
    entity_id: UUID
    room_id: UUID
    content: dict[str, Any]
    metadata: dict[str, Any]
    """What the host and plugins noted about the memory (e.g. ``model_fallback`` on a reply
    ELIZA gave because the configured model failed)."""
    created_at: str
    cursor: str
    embedding: list[float] | None = None
    """The memory's vector, only when asked for (``?embeddings=true``)."""


class MemoryPage(BaseModel):
    items: list[MemoryOut]
    next_cursor: str | None
    """Pass as ``cursor`` to get the next page; None on the last page."""


def _memory_out(memory: Memory) -> MemoryOut:
    embedding = memory.embedding
    return MemoryOut(
        embedding=None if embedding is None else embedding.tolist(),
        id=memory.id,
        agent_id=memory.agent_id,
        entity_id=memory.entity_id,
        room_id=memory.room_id,
        content=memory.content.model_dump(),
        metadata=memory.metadata,
        created_at=memory.created_at.isoformat(),
        cursor=memory.cursor.encode(),
    )


@router.get("/agents/{agent}/rooms/{room_id}/memories")
async def room_memories(
    runtime: Runtime,
    room_id: UUID,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None,
        Query(description="next_cursor of the last page (opaque)", pattern=CURSOR_PATTERN),
    ] = None,
    order: Annotated[Order, Query()] = "desc",
    embeddings: Annotated[
        bool, Query(description="include each memory's vector (not read otherwise)")
    ] = False,
) -> MemoryPage:
    """The room's memories of this agent, newest first by default, `limit` per page."""
    try:
        after = Cursor.decode(cursor) if cursor else None
    except InvalidCursorError as exc:
        raise HTTPException(
            422,
            detail=[{"loc": ["query", "cursor"], "msg": str(exc), "type": "value_error"}],
        ) from exc
    rows = await runtime.database.get_memories(
        MemoryQuery(
            agent_id=runtime.agent_id,
            room_id=room_id,
            order=order,
            limit=limit + 1,
            after=after,
            with_embeddings=embeddings,
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return MemoryPage(
        items=[_memory_out(m) for m in rows],
        next_cursor=rows[-1].cursor.encode() if more and rows else None,
    )
