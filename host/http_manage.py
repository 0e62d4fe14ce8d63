"""Management routes of the HTTP API: start and stop agents, list an agent's rooms, delete memories.

- ``POST   /agents/{agent}/start``                        start a configured agent (idempotent)
- ``POST   /agents/{agent}/stop``                         stop it, letting its messages finish
- ``GET    /agents/{agent}/rooms``                        the rooms the agent has memories in
- ``DELETE /agents/{agent}/memories/{memory_id}``         delete one of its memories
- ``DELETE /agents/{agent}/rooms/{room_id}/memories``     delete a room's memories

Mounted by `host.http.create_app` behind the API key like every route but ``/health``. Deletes
emit ``memory:deleted`` (the audit trail records them; the provider cache drops what they fed).
The functions below are what the routes (and the web console) call.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel

from contracts.events import MEMORY_DELETED, MemoryPayload
from contracts.memory import Memory, MemoryQuery
from host.agents import AgentManager
from host.http_deps import Agents, ErrorOut
from host.runtime import AgentRuntime, agent_id_for

__all__ = [
    "AgentState",
    "DeletedOut",
    "RoomOut",
    "character_name",
    "delete_memory",
    "delete_room_memories",
    "list_rooms",
    "router",
]

DELETE_BATCH = 500
"""Memories deleted per store transaction when a room is emptied."""


class RoomOut(BaseModel):
    """A room an agent has memories in."""

    room_id: UUID
    memories: int
    """How many of the agent's memories (every table) belong to the room."""
    last_at: datetime
    """When its newest memory was created."""


class DeletedOut(BaseModel):
    deleted: int
    """How many memories were deleted (0: none matched)."""


class AgentState(BaseModel):
    name: str
    running: bool


async def list_rooms(runtime: AgentRuntime) -> list[RoomOut]:
    """The agent's rooms, most recently active first: the store's grouped query
    (`DatabaseAdapter.room_summaries`), no memory read."""
    rooms = await runtime.database.room_summaries(MemoryQuery(agent_id=runtime.agent_id))
    return [RoomOut(room_id=r.room_id, memories=r.memories, last_at=r.last_at) for r in rooms]


async def _deleted(runtime: AgentRuntime, memories: Sequence[Memory]) -> None:
    for memory in memories:
        await runtime.events.emit(
            MEMORY_DELETED,
            MemoryPayload(
                agent_id=memory.agent_id,
                room_id=memory.room_id,
                entity_id=memory.entity_id,
                memory_id=memory.id,
                table_name=memory.table_name,
            ),
        )


async def delete_memory(runtime: AgentRuntime, memory_id: UUID) -> bool:
    """Delete the agent's memory `memory_id`; False if the agent has no such memory (another
    agent's memory is not touched)."""
    memory = await runtime.database.get_memory(memory_id)
    if memory is None or memory.agent_id != runtime.agent_id:
        return False
    if not await runtime.database.delete_memory(memory_id):
        return False
    await _deleted(runtime, [memory])
    return True


async def delete_room_memories(runtime: AgentRuntime, room_id: UUID) -> int:
    """Delete every memory of the agent in `room_id` (every table), `DELETE_BATCH` per
    transaction; how many were deleted."""
    total = 0
    query = MemoryQuery(
        agent_id=runtime.agent_id, room_id=room_id, order="asc", with_embeddings=False
    )
    while True:
        page = await runtime.database.get_memories(query.model_copy(update={"limit": DELETE_BATCH}))
        if not page:
            return total
        total += await runtime.database.delete_memories_batch([m.id for m in page])
        await _deleted(runtime, page)
        if len(page) < DELETE_BATCH:
            return total


AgentRef = Annotated[str, Path(description="name, username or id")]

router = APIRouter()
"""The routes above; they read the `AgentManager` from the app's state."""
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such agent (or it is not running)"}
}


@router.post("/agents/{agent}/start", tags=["agents"], responses=_NOT_FOUND)
async def start_agent(agents: Agents, agent: AgentRef) -> AgentState:
    """Start a configured agent; nothing happens if it already runs."""
    runtime = await agents.start(agent)
    return AgentState(name=runtime.name, running=True)


@router.post("/agents/{agent}/stop", tags=["agents"], responses=_NOT_FOUND)
async def stop_agent(agents: Agents, agent: AgentRef) -> AgentState:
    """Stop an agent once its messages in progress are answered (new ones get 503)."""
    await agents.stop(agent)  # unknown: UnknownAgentError, the app's 404
    return AgentState(name=character_name(agents, agent), running=False)


@router.get("/agents/{agent}/rooms", tags=["memories"], responses=_NOT_FOUND)
async def rooms(agents: Agents, agent: AgentRef) -> list[RoomOut]:
    """The rooms the agent has memories in, most recently active first."""
    # UnknownAgentError (unknown or not running) is the app's 404
    return await list_rooms(agents.get(agent))


@router.delete("/agents/{agent}/memories/{memory_id}", tags=["memories"], responses=_NOT_FOUND)
async def delete_one(agents: Agents, agent: AgentRef, memory_id: UUID) -> DeletedOut:
    """Delete one of the agent's memories (404 if it has none with this id)."""
    if not await delete_memory(agents.get(agent), memory_id):
        raise HTTPException(404, detail=f"agent {agent!r} has no memory {memory_id}")
    return DeletedOut(deleted=1)


@router.delete("/agents/{agent}/rooms/{room_id}/memories", tags=["memories"], responses=_NOT_FOUND)
async def delete_room(agents: Agents, agent: AgentRef, room_id: UUID) -> DeletedOut:
    """Delete every memory of the agent in the room (0 deleted if it has none there)."""
    return DeletedOut(deleted=await delete_room_memories(agents.get(agent), room_id))


def character_name(agents: AgentManager, ref: str) -> str:
    """The name of the configured agent `ref` (a name, username or id) names; `ref` if none."""
    text = ref.strip().lower()
    for character in agents.characters:
        ids = (character.name.lower(), (character.username or "").lower())
        if text in ids or text == str(agent_id_for(character.name)):
            return character.name
    return ref
