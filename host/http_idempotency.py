"""``Idempotency-Key`` in single-process mode: a retried POST is the same message, durably.

The same rule as cluster mode (`host.cluster.dispatch`): the message id is derived from the
agent and the key (`message_id_for`), and ingress records each keyed message before running it.
Here the record is a row of ``<data_dir>/ingress.sqlite3`` (the room queue's
``cluster_messages`` in cluster mode): the key, a fingerprint of the message (agent, room,
sender, content), and once answered the `Reply` as JSON. So a request sent again with the key

- after its reply, even after a restart: gets the original reply; nothing is written again;
- while the first is still running: waits for it and gets the same reply;
- with a different body: 409 naming the header (`KeyReused`), nothing written.

A keyed message whose pipeline fails leaves nothing: its stored message is deleted (with
``memory:deleted``) and its row forgotten, so sending it again with the key runs it afresh and
stores it once. A row left pending by a process that stopped mid-message is settled by the next
request with its key: the reply found in the store is returned (as a `Reply` rebuilt from the
stored memories: text and reply memory, without the action results or timings), else the
half-processed message is deleted and run again. Rows are kept `KEEP_FOR` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

from loguru import logger

from contracts.agent import Reply
from contracts.errors import AgentHostError
from contracts.memory import Memory, MemoryQuery
from contracts.storage import StorageUnavailableError
from host.http_deps import ReplyStreamLike
from host.http_manage import delete_memory
from host.runtime import AgentRuntime

__all__ = [
    "INGRESS_FILE",
    "KEEP_FOR",
    "IngressLog",
    "KeyReused",
    "LocalIngress",
    "check_fingerprint",
    "fingerprint",
    "message_id_for",
]

INGRESS_FILE = "ingress.sqlite3"
KEEP_FOR = 24 * 3600.0
"""Seconds a key is remembered after its message arrived."""
_SCAN = 200
"""Memories read after a message when looking for its stored reply."""

_log = logger.bind(component="http")


def message_id_for(agent_id: UUID, key: str) -> UUID:
    """The id of the message sent with `key` to the agent `agent_id` (cluster mode too)."""
    return uuid5(agent_id, f"idempotency:{key}")


def fingerprint(message: Memory) -> str:
    """What makes two requests with one key the same message (not its id or arrival time)."""
    body = message.model_dump_json(include={"agent_id", "room_id", "entity_id", "content"})
    return hashlib.sha256(body.encode()).hexdigest()


class KeyReused(AgentHostError):
    """An ``Idempotency-Key`` sent again with another message (HTTP 409)."""


@dataclass(frozen=True, slots=True)
class Record:
    fingerprint: str
    status: str
    """``pending`` (taken, not answered) or ``done``."""
    reply: str | None


class IngressLog:
    """The keyed messages taken, in a SQLite file (a connection per call, on a worker thread:
    only keyed requests come here)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._purged = 0.0
        self._ready = False

    def _connect(self) -> sqlite3.Connection:
        """A connection to the log, its directory and table made on first use (the data dir
        need not exist: with the PostgreSQL store nothing else creates it). A file that cannot
        be opened is a `StorageUnavailableError` naming it (HTTP 503), not a 500."""
        conn: sqlite3.Connection | None = None
        try:
            if not self._ready:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            # a damaged file or a full disk shows at the first statement, not at connect
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # an answered key survives a power cut
            if not self._ready:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS ingress (id TEXT PRIMARY KEY, agent_id TEXT NOT"
                    " NULL, idem_key TEXT NOT NULL, fingerprint TEXT NOT NULL, status TEXT NOT"
                    " NULL, reply TEXT, created_at REAL NOT NULL, done_at REAL)"
                )
                conn.execute("CREATE INDEX IF NOT EXISTS ingress_age ON ingress (created_at)")
                self._ready = True
        except (OSError, sqlite3.Error) as exc:
            if conn is not None:
                conn.close()
            raise StorageUnavailableError(
                f"the Idempotency-Key log {self.path} cannot be opened: {exc}"
            ) from exc
        return conn

    def _claim(self, message_id: UUID, agent_id: UUID, key: str, print_: str) -> Record | None:
        now = time.time()
        with self._connect() as conn:
            if now - self._purged > 3600:
                conn.execute("DELETE FROM ingress WHERE created_at < ?", (now - KEEP_FOR,))
                self._purged = now
            taken = conn.execute(
                "INSERT OR IGNORE INTO ingress (id, agent_id, idem_key, fingerprint, status,"
                " created_at) VALUES (?, ?, ?, ?, 'pending', ?)",
                (str(message_id), str(agent_id), key, print_, now),
            ).rowcount
            if taken:
                return None
            row = conn.execute(
                "SELECT fingerprint, status, reply FROM ingress WHERE id = ?", (str(message_id),)
            ).fetchone()
        return Record(*row)

    def _finish(self, message_id: UUID, reply: str) -> None:
        with self._connect() as conn:
            conn.execute(
                "UPDATE ingress SET status = 'done', reply = ?, done_at = ? WHERE id = ?",
                (reply, time.time(), str(message_id)),
            )

    def _forget(self, message_id: UUID) -> None:
        with self._connect() as conn:
            conn.execute("DELETE FROM ingress WHERE id = ?", (str(message_id),))

    async def claim(self, message_id: UUID, agent_id: UUID, key: str, print_: str) -> Record | None:
        """Record the message as taken; None if it is new, else the earlier record."""
        return await asyncio.to_thread(self._claim, message_id, agent_id, key, print_)

    async def finish(self, message_id: UUID, reply: Reply) -> None:
        await asyncio.to_thread(self._finish, message_id, reply.model_dump_json())

    async def forget(self, message_id: UUID) -> None:
        await asyncio.to_thread(self._forget, message_id)


@dataclass(slots=True)
class _Running:
    fingerprint: str
    done: asyncio.Future[Reply]


@dataclass(slots=True)
class _Intake:
    """A room's keyed requests between arrival and their place in the room's queue."""

    lock: asyncio.Lock
    users: int = 0


class LocalIngress:
    """Keyed messages of the HTTP routes in single-process mode (see the module doc).

    Order: a keyed request records its key (a write to the log on a worker thread) before its
    message enters the room's queue, and such writes end in any order. So the requests of one
    room go through their key's record one at a time, in arrival order (`_in_order`), each
    entering the room's queue before the next one's record is made; an unkeyed request
    arriving meanwhile waits behind them (`after_keyed`). Rooms do not wait for each other. A
    stream enters the room's queue only when its response starts iterating it, a moment later
    (docs/runtime.md says so).
    """

    def __init__(self, log: IngressLog) -> None:
        self.log = log
        self._running: dict[UUID, _Running] = {}
        self._intakes: dict[tuple[UUID, UUID], _Intake] = {}

    @contextlib.asynccontextmanager
    async def _in_order(self, runtime: AgentRuntime, room_id: UUID) -> AsyncIterator[None]:
        """Hold the room's intake (FIFO) while a keyed request is recorded. On leaving, the
        caller must hand its message to the runtime before its next await: that is what keeps
        the room's arrival order."""
        where = (runtime.agent_id, room_id)
        intake = self._intakes.get(where)
        if intake is None:
            intake = self._intakes[where] = _Intake(asyncio.Lock())
        intake.users += 1
        try:
            async with intake.lock:
                yield
        finally:
            intake.users -= 1
            if not intake.users and self._intakes.get(where) is intake:
                del self._intakes[where]

    async def after_keyed(self, runtime: AgentRuntime, room_id: UUID) -> None:
        """Wait (an unkeyed request) until the keyed requests of the room that arrived before
        it are in the room's queue; returns at once, without awaiting, when there are none."""
        if (runtime.agent_id, room_id) in self._intakes:
            async with self._in_order(runtime, room_id):
                pass

    async def process(self, runtime: AgentRuntime, message: Memory, key: str) -> Reply:
        message = message.model_copy(update={"id": message_id_for(runtime.agent_id, key)})
        async with self._in_order(runtime, message.room_id):
            earlier, running = await self._begin(runtime, message, key)
        if running is None:
            assert earlier is not None
            return earlier
        try:
            reply = await runtime.process_message(message)
        except BaseException as exc:
            await self._failed(runtime, message.id, running, exc)
            raise
        return await self._done(message.id, running, reply)

    async def stream(self, runtime: AgentRuntime, message: Memory, key: str) -> ReplyStreamLike:
        """The reply streamed; the key is checked (and an earlier reply awaited) before the
        first chunk, so a reused key is a 409, not a stream that fails."""
        message = message.model_copy(update={"id": message_id_for(runtime.agent_id, key)})
        async with self._in_order(runtime, message.room_id):
            earlier, running = await self._begin(runtime, message, key)
        return _KeyedStream(self, runtime, message, earlier, running)

    async def _begin(
        self, runtime: AgentRuntime, message: Memory, key: str
    ) -> tuple[Reply | None, _Running | None]:
        """The reply of the message's earlier arrival (awaited while it runs), or the entry
        this request settles once it has run the message (recorded as pending)."""
        print_ = fingerprint(message)
        running = self._running.get(message.id)
        if running is not None:
            check_fingerprint(running.fingerprint, print_, key)
            return await asyncio.shield(running.done), None
        # registered before the first await: a request with the key arriving meanwhile waits
        done: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        done.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved
        running = self._running[message.id] = _Running(print_, done)
        try:
            record = await self.log.claim(message.id, runtime.agent_id, key, print_)
            if record is None:
                return None, running
            check_fingerprint(record.fingerprint, print_, key)
            if record.reply is not None:
                reply: Reply | None = Reply.model_validate_json(record.reply)
            else:  # pending, and not running here: its process stopped mid-message
                reply = await _stored_reply(runtime, message.id)
                if reply is not None:
                    await self.log.finish(message.id, reply)
                else:  # the half-processed message (if stored) goes: it runs again
                    await delete_memory(runtime, message.id)
        except BaseException as exc:
            self._running.pop(message.id, None)
            done.set_exception(exc if isinstance(exc, Exception) else _Gone())
            raise
        if reply is None:
            return None, running
        self._running.pop(message.id, None)
        done.set_result(reply)
        return reply, None

    async def _done(self, message_id: UUID, running: _Running, reply: Reply) -> Reply:
        """The message was answered: record its reply, hand it to the requests waiting."""
        try:
            await asyncio.shield(self.log.finish(message_id, reply))
        except Exception as exc:  # the reply stands; a retry finds it in the store
            _log.warning("recording the reply of message {} failed: {}", message_id, exc)
        finally:
            self._running.pop(message_id, None)
            running.done.set_result(reply)
        return reply

    async def _failed(
        self, runtime: AgentRuntime, message_id: UUID, running: _Running, exc: BaseException
    ) -> None:
        """The pipeline failed: nothing of the message stays, so its key may be sent again."""
        try:
            await asyncio.shield(delete_memory(runtime, message_id))
            await asyncio.shield(self.log.forget(message_id))
        finally:
            self._running.pop(message_id, None)
            running.done.set_exception(exc if isinstance(exc, Exception) else _Gone())


class _Gone(AgentHostError):
    """The request running the message was cancelled (its client left) before the reply."""

    def __init__(self) -> None:
        super().__init__("the request that ran this message was cancelled; send it again")


class _KeyedStream:
    """`ReplyStreamLike` of a keyed message: the runtime's stream, or the earlier reply's text
    as one chunk."""

    def __init__(
        self,
        ingress: LocalIngress,
        runtime: AgentRuntime,
        message: Memory,
        earlier: Reply | None,
        running: _Running | None,
    ) -> None:
        self.reply: Reply | None = None
        self._chunks = self._generate(ingress, runtime, message, earlier, running)
        self._unsettled = (ingress, runtime, message.id, running)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._chunks

    async def aclose(self) -> None:
        await self._chunks.aclose()
        ingress, runtime, message_id, running = self._unsettled
        if running is not None and not running.done.done():  # closed before it ran
            await ingress._failed(runtime, message_id, running, _Gone())

    async def _generate(
        self,
        ingress: LocalIngress,
        runtime: AgentRuntime,
        message: Memory,
        earlier: Reply | None,
        running: _Running | None,
    ) -> AsyncGenerator[str, None]:
        if running is None:
            assert earlier is not None
            if earlier.text:
                yield earlier.text
            self.reply = earlier
            return
        inner = runtime.stream_message(message)
        try:
            async for chunk in inner:
                yield chunk
        except BaseException as exc:
            await inner.aclose()
            await ingress._failed(runtime, message.id, running, exc)
            raise
        await inner.aclose()
        assert inner.reply is not None
        self.reply = await ingress._done(message.id, running, inner.reply)


def check_fingerprint(recorded: str, given: str, key: str) -> None:
    """`KeyReused` unless the message recorded with `key` had this fingerprint (cluster mode
    checks it too)."""
    if recorded != given:
        raise KeyReused(
            f"Idempotency-Key {key!r} was already used for another message (a different body,"
            " agent or room); send a new message with a new key"
        )


async def _stored_reply(runtime: AgentRuntime, message_id: UUID) -> Reply | None:
    """The reply the store holds for `message_id` (a process stopped before recording it)."""
    message = await runtime.database.get_memory(message_id)
    if message is None:
        return None
    rows = await runtime.database.get_memories(
        MemoryQuery(
            agent_id=runtime.agent_id,
            room_id=message.room_id,
            order="asc",
            after=message.cursor,
            limit=_SCAN,
        )
    )
    for row in rows:
        extra: dict[str, Any] = row.content.model_extra or {}
        if extra.get("in_reply_to") == str(message_id):
            return Reply(
                agent_id=runtime.agent_id,
                room_id=message.room_id,
                message_id=message_id,
                responded=True,
                text=row.content.text or "",
                reply=row,
            )
    return None
