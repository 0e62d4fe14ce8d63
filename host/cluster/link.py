"""`NatsLink`: this process's connection to NATS, optional by design.

What travels on NATS (wake-ups, replies, streamed chunks, cache invalidations) is never its only
copy: PostgreSQL holds the queue and the replies, and every member polls it when NATS is quiet
or down. So the link connects in the background, retries forever, and `publish` returns False
instead of failing when NATS is away; subscriptions made before the connection are applied once
it is up (nats-py renews them after a reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

__all__ = ["NatsLink", "Subjects"]

_log = logger.bind(component="cluster")

Handler = Callable[[str, bytes], Awaitable[None]]
"""Called with a message's subject and data."""


class Subjects:
    """The cluster's NATS subjects."""

    WAKE = "agenthost.cluster.wake"
    """A room has work: workers with a free slot claim now rather than at their next poll."""
    CACHE = "agenthost.cluster.cache"
    """A provider-cache invalidation (an event the cache listens to) from another process."""

    EVENTS = "agenthost.cluster.event.>"

    @staticmethod
    def event(name: str) -> str:
        """An event marked for the cluster (``:`` is not a NATS subject character)."""
        return "agenthost.cluster.event." + name.replace(":", "~").replace(".", "^")

    @staticmethod
    def event_name(subject: str) -> str:
        return subject.removeprefix("agenthost.cluster.event.").replace("^", ".").replace("~", ":")

    @staticmethod
    def reply(node: str) -> str:
        """Ends of messages taken by the API process `node` (a reply, or a parked error)."""
        return f"agenthost.cluster.reply.{node}"

    @staticmethod
    def chunk(node: str) -> str:
        """Streamed text chunks for the API process `node`."""
        return f"agenthost.cluster.chunk.{node}"


class NatsLink:
    def __init__(self, url: str | None, name: str) -> None:
        self.url = url
        self.name = name
        self._nc: Client | None = None
        self._subscriptions: list[tuple[str, Handler, str]] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.up = asyncio.Event()

    @property
    def connected(self) -> bool:
        nc = self._nc
        return nc is not None and nc.is_connected

    def start(self) -> None:
        if self.url is not None and self._task is None:
            self._task = asyncio.create_task(self._connect(), name="nats-connect")

    async def _connect(self) -> None:
        import nats

        assert self.url is not None

        async def disconnected() -> None:
            _log.warning("NATS at {} lost: polling PostgreSQL until it is back", self.url)

        async def reconnected() -> None:
            _log.info("NATS at {} back", self.url)

        async def error(exc: Exception) -> None:
            _log.debug("NATS: {}", exc)

        delay = 0.5
        while not self._closed:
            try:
                nc = await nats.connect(
                    self.url,
                    name=self.name,
                    connect_timeout=2,
                    reconnect_time_wait=1,
                    max_reconnect_attempts=-1,
                    allow_reconnect=True,
                    ping_interval=5,
                    max_outstanding_pings=2,
                    disconnected_cb=disconnected,
                    reconnected_cb=reconnected,
                    error_cb=error,
                )
            except Exception as exc:
                _log.debug("NATS at {} not reachable ({}); retrying", self.url, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._nc = nc
            for subject, handler, queue in self._subscriptions:
                await self._apply(subject, handler, queue)
            self.up.set()
            _log.info("NATS connected at {}", self.url)
            return

    async def _apply(self, subject: str, handler: Handler, queue: str) -> None:
        async def on_message(msg: Msg) -> None:
            try:
                await handler(msg.subject, msg.data)
            except Exception as exc:
                _log.opt(exception=exc).warning("NATS handler of {} failed: {}", subject, exc)

        assert self._nc is not None
        await self._nc.subscribe(subject, queue=queue, cb=on_message)

    async def subscribe(self, subject: str, handler: Handler, *, queue: str = "") -> None:
        """Call `handler` for each message on `subject`; with a `queue` group, one member of
        the group gets each message (NATS picks it)."""
        self._subscriptions.append((subject, handler, queue))
        if self._nc is not None:
            await self._apply(subject, handler, queue)

    async def publish(self, subject: str, data: bytes) -> bool:
        """Publish `data`; False (never an error) when NATS is not connected."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            return False
        try:
            await nc.publish(subject, data)
        except Exception as exc:
            _log.debug("NATS publish to {} failed: {}", subject, exc)
            return False
        return True

    async def flush(self, wait: int = 2) -> bool:
        """Until the server has what was published (False when it did not answer)."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            return False
        try:
            await nc.flush(timeout=wait)
        except Exception as exc:
            _log.debug("NATS flush failed: {}", exc)
            return False
        return True

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.close(), 5)
