"""The per-room queue of one agent: a room's messages one at a time, in arrival order.

Different rooms run in parallel. The queue is also the agent's gate: `hold` lets new messages
wait (hot reload swaps a plugin meanwhile), `stop` refuses them, `drain` waits for the ones in
progress.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from uuid import UUID

from contracts.agent import AgentError

__all__ = ["RoomQueue"]


@dataclass(slots=True)
class _Room:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
    """Messages holding or waiting for the room's turn."""


class RoomQueue:
    """The rooms of the agent named `agent` (the name is for error messages)."""

    def __init__(self, agent: str) -> None:
        self._agent = agent
        self._rooms: dict[UUID, _Room] = {}
        self._running = True
        self._open = asyncio.Event()
        self._open.set()

    @property
    def running(self) -> bool:
        """False once `stop` was called: every message from then on is refused."""
        return self._running

    def stop(self) -> None:
        """Refuse new messages, and those still waiting for their room's turn."""
        self._running = False

    def hold(self) -> None:
        """Let new messages wait (not fail) until `release`."""
        self._open.clear()

    def release(self) -> None:
        """Let the messages held since `hold` in."""
        self._open.set()

    def waiting(self, room_id: UUID) -> int:
        """How many messages hold or wait for `room_id`'s turn."""
        room = self._rooms.get(room_id)
        return room.users if room is not None else 0

    async def drain(self, grace: float | None = 30.0) -> bool:
        """Wait (up to `grace` seconds) for the messages in progress now; False on timeout."""
        busy = [room.lock for room in self._rooms.values() if room.lock.locked()]
        if not busy:
            return True

        async def wait() -> None:
            for lock in busy:
                async with lock:
                    pass

        try:
            async with asyncio.timeout(grace):
                await wait()
        except TimeoutError:
            return False
        return True

    @asynccontextmanager
    async def turn(self, room_id: UUID) -> AsyncIterator[None]:
        """Hold the room's turn for one message; `AgentError` once the agent is stopped.

        Checked again after the wait: a message queued behind another of its room when `stop`
        was called must not start then (it would run while, or after, the agent's scope closes).
        """
        if not self._open.is_set():
            await self._open.wait()
        if not self._running:
            raise AgentError(f"agent {self._agent} is stopped")
        room = self._rooms.get(room_id)
        if room is None:
            room = self._rooms[room_id] = _Room()
        room.users += 1
        try:
            async with room.lock:
                if not self._running:
                    raise AgentError(f"agent {self._agent} was stopped while the message waited")
                yield
        finally:
            room.users -= 1
            if room.users == 0 and self._rooms.get(room_id) is room:
                del self._rooms[room_id]
