"""`Outbox`: cluster events go to NATS from a PostgreSQL table, so NATS is never their only copy.

An event marked for the cluster is first a row of ``cluster_outbox``: written in the commit of
the message whose turn raised it (`RoomQueue.commit`: a try that fails or is fenced writes none),
or in a transaction of its own when raised outside a message. The process that wrote the rows
sends them at once (`publish`; a worker `post`s them, sent by a task of the outbox's so that it
does not wait for NATS between messages) and forgets them a little later in one batch; rows
that could not be sent (NATS down or restarting) stay, and the relay loop of this process sends
them once NATS is back, in order. A process that died before sending its rows leaves them to
the relay of any other process after ``stale`` seconds. Delivery is at least once: each event
carries its row's ``seq``, and receivers drop a ``seq`` they have seen (`Seen`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from loguru import logger

from .link import NatsLink
from .queue import RoomQueue
from .records import OutboxEntry

__all__ = ["Outbox", "Seen", "frame", "unframe"]

_log = logger.bind(component="cluster")

Row = tuple[int, str, bytes]


def frame(seq: int, data: bytes) -> bytes:
    """The NATS message of outbox row `seq` (its stored data is a JSON object)."""
    return b'{"seq":%d,"body":%s}' % (seq, data)


def unframe(data: bytes) -> tuple[int, dict[str, Any]]:
    item = json.loads(data)
    return int(item["seq"]), item["body"]


class Seen:
    """The last `size` outbox seqs received (an event sent twice is handled once)."""

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self._seqs: OrderedDict[int, None] = OrderedDict()

    def first(self, seq: int) -> bool:
        if seq in self._seqs:
            return False
        self._seqs[seq] = None
        if len(self._seqs) > self.size:
            self._seqs.popitem(last=False)
        return True


class Outbox:
    def __init__(self, queue: RoomQueue, link: NatsLink, *, interval: float, stale: float) -> None:
        self.queue = queue
        self.link = link
        self.interval = interval
        self.stale = stale
        self._published: list[int] = []
        self._busy: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._posted: list[Row] = []
        self._poster: asyncio.Task[None] | None = None
        self.relayed = 0
        """Rows sent by the relay loop (NATS was away when they were committed, or their
        process died)."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._relay_loop(), name="cluster-outbox")

    async def stop(self) -> None:
        if self._poster is not None:  # what was posted goes first
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._poster), 5)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):  # best effort: the rows go if this fails
            await self.queue.outbox_done(self._published)

    async def send(self, entries: Sequence[OutboxEntry]) -> None:
        """Store events raised outside a message's unit, then send them."""
        await self.publish(await self.queue.outbox_put(entries))

    def post(self, rows: Sequence[Row]) -> None:
        """Send committed rows soon, in order, from a task of the outbox's: the caller (a
        worker between two messages) does not wait for NATS's answer, and rows posted while
        one batch is being sent go in the next batch, confirmed by one flush."""
        if not rows:
            return
        self._posted.extend(rows)
        self._busy.update(row[0] for row in rows)
        if self._poster is None or self._poster.done():
            self._poster = asyncio.create_task(self._send_posted(), name="cluster-outbox-post")

    async def _send_posted(self) -> None:
        while self._posted:
            rows, self._posted = self._posted, []
            try:
                self._published.extend(await self._send(rows))
            except Exception as exc:  # the relay loop sends them
                _log.warning("sending cluster events failed ({}); the relay sends them", exc)
            finally:
                self._busy.difference_update(row[0] for row in rows)

    async def publish(self, rows: Sequence[Row]) -> None:
        """Send committed rows now; those NATS does not take stay for the relay loop."""
        if not rows:
            return
        self._busy.update(row[0] for row in rows)
        try:
            sent = await self._send(rows)
            self._published.extend(sent)
        finally:
            self._busy.difference_update(row[0] for row in rows)

    async def _send(self, rows: Sequence[Row]) -> list[int]:
        sent: list[int] = []
        for seq, subject, data in rows:
            if not await self.link.publish(subject, frame(seq, data)):
                break  # keep the order: the relay sends the rest
            sent.append(seq)
        if sent and not await self.link.flush():
            return []  # not confirmed by the server: sent again (receivers drop doubles)
        return sent

    async def _relay_loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if not self.link.connected:
                continue
            published, self._published = self._published, []
            try:
                rows = await self.queue.outbox_relay(published, self.stale, sorted(self._busy))
                sent = await self._send(rows)
                await self.queue.outbox_done(sent)
            except Exception as exc:
                self._published = published + self._published
                _log.warning("sending the cluster outbox failed ({}); retrying", exc)
                continue
            if sent:
                self.relayed += len(sent)
                _log.debug("sent {} cluster events from the outbox", len(sent))
