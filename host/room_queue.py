"""The per-room queue of one agent: a room's messages one at a time, in arrival order.

Different rooms run in parallel. The queue is also the agent's gate: `hold` lets new messages
wait (hot reload swaps a plugin meanwhile), `stop` refuses them, `drain` waits for the ones in
progress.
"""

from __future__ import annotations

import asyncio
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

    def turn(self, room_id: UUID) -> _Turn:
        """Hold the room's turn for one message (``async with rooms.turn(room_id):``);
        `AgentError` once the agent is stopped.

        Checked again after the wait: a message queued behind another of its room when `stop`
        was called must not start then (it would run while, or after, the agent's scope closes).
        """
        return _Turn(self, room_id)


class _Turn:
    """`RoomQueue.turn`: a class, not an ``asynccontextmanager`` (entered once a message, an
    async generator cost a tenth of a message's turn machinery)."""

    __slots__ = ("_queue", "_room", "_room_id")

    def __init__(self, queue: RoomQueue, room_id: UUID) -> None:
        self._queue = queue
        self._room_id = room_id
        self._room: _Room | None = None

    async def __aenter__(self) -> None:
        queue = self._queue
        if not queue._open.is_set():
            await queue._open.wait()
        if not queue._running:
            raise AgentError(f"agent {queue._agent} is stopped")
        room = queue._rooms.get(self._room_id)
        if room is None:
            room = queue._rooms[self._room_id] = _Room()
        room.users += 1
        self._room = room
        try:
            await room.lock.acquire()
        except BaseException:
            self._leave()
            raise
        if not queue._running:
            room.lock.release()
            self._leave()
            raise AgentError(f"agent {queue._agent} was stopped while the message waited")

    async def __aexit__(self, *exc: object) -> None:
        assert self._room is not None
        self._room.lock.release()
        self._leave()

    def _leave(self) -> None:
        room, rooms = self._room, self._queue._rooms
        assert room is not None
        room.users -= 1
        if room.users == 0 and rooms.get(self._room_id) is room:
            del rooms[self._room_id]
