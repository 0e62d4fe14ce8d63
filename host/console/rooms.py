"""`RoomIndex`: each agent's rooms for the console's pickers, without a query per page view.

Listing an agent's rooms is one grouped query (`DatabaseAdapter.room_summaries`, through
`host.http_manage.list_rooms`: ~25 ms for 20k memories on SQLite, where reading them took ~0.7 s).
The index asks once per agent, then follows ``memory:created`` and ``memory:deleted`` on the
bus; it asks again after `ttl` seconds, which also picks up memories written past the bus
(another process on the same database, a plugin deleting without the event).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from uuid import UUID

from contracts.events import MEMORY_CREATED, MEMORY_DELETED, EventBusProtocol, MemoryPayload
from contracts.memory import utc_now
from host.http_manage import RoomOut, list_rooms
from host.runtime import AgentRuntime

__all__ = ["RoomIndex"]


@dataclass
class _Rooms:
    built: float
    rooms: dict[UUID, RoomOut] = field(default_factory=dict)


class RoomIndex:
    """Rooms per agent, kept current from the bus (see the module docstring)."""

    def __init__(self, events: EventBusProtocol, *, ttl: float = 300.0) -> None:
        self.ttl = ttl
        self._agents: dict[UUID, _Rooms] = {}
        self._scanning: dict[UUID, bool] = {}
        """Agents being scanned, and whether a memory event came meanwhile (the scan may or
        may not have seen it: its result is used but not kept)."""
        self.subscriptions = [
            events.on(MEMORY_CREATED, self._created, owner="console"),
            events.on(MEMORY_DELETED, self._deleted, owner="console"),
        ]

    async def rooms(self, runtime: AgentRuntime) -> list[RoomOut]:
        """The agent's rooms, most recently active first."""
        agent = runtime.agent_id
        known = self._agents.get(agent)
        if known is None or time.monotonic() - known.built > self.ttl:
            self._scanning[agent] = False
            try:
                found = await list_rooms(runtime)
            finally:
                moved = self._scanning.pop(agent, True)
            if moved:
                self._agents.pop(agent, None)
                return found
            known = self._agents[agent] = _Rooms(
                time.monotonic(), {r.room_id: r.model_copy() for r in found}
            )
        return sorted(
            (r.model_copy() for r in known.rooms.values()), key=lambda r: r.last_at, reverse=True
        )

    def _moved(self, agent: UUID) -> _Rooms | None:
        if agent in self._scanning:
            self._scanning[agent] = True
        return self._agents.get(agent)

    def _created(self, payload: MemoryPayload) -> None:
        known = self._moved(payload.agent_id)
        if known is None:
            return
        at = payload.memory.created_at if payload.memory is not None else utc_now()
        room = known.rooms.get(payload.room_id)
        if room is None:
            known.rooms[payload.room_id] = RoomOut(room_id=payload.room_id, memories=1, last_at=at)
        else:
            room.memories += 1
            room.last_at = max(room.last_at, at)

    def _deleted(self, payload: MemoryPayload) -> None:
        known = self._moved(payload.agent_id)
        if known is None:
            return
        room = known.rooms.get(payload.room_id)
        if room is not None:
            room.memories -= 1
            if room.memories <= 0:
                del known.rooms[payload.room_id]
