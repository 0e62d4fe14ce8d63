"""`ClusterDispatch`: the API side of cluster mode, queueing messages instead of running them.

`process` stores the message in the room queue (deduplicated by id; with an ``Idempotency-Key``
the id is derived from the key, so a retried request is the same message), wakes the workers,
and waits for its end: the worker publishes it on NATS to this process, and this process also
polls PostgreSQL for it, so a lost or delayed NATS message only costs a poll interval. `stream`
does the same while passing on the chunks the worker streams (NATS only: without NATS the text
comes whole at the end); it queues the message before its first chunk, so a full room (429), a
reused key (409) or PostgreSQL away (503) answers with its status, not a stream that fails.

A keyed message is stored with the fingerprint of its body (`fingerprint`, as single-process
mode keeps it): the same key sent again with another body, by any API process, is refused
(`KeyReused`, HTTP 409) and nothing is queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from loguru import logger

from contracts.agent import Reply
from contracts.cluster import ClusterSettings
from contracts.errors import AgentHostError
from contracts.memory import Memory
from host.http_idempotency import check_fingerprint, fingerprint, message_id_for
from host.runtime import AgentRuntime

from .link import NatsLink, Subjects
from .queue import RoomQueue
from .records import Outcome

__all__ = ["ClusterDispatch", "MessageParked", "ReplyTimeout"]

_log = logger.bind(component="cluster")


class MessageParked(AgentHostError):
    """The message failed ``max_tries`` times and was parked (HTTP 502)."""


class ReplyTimeout(AgentHostError):
    """No reply within ``reply_timeout`` (HTTP 504): the message stays queued."""


@dataclass(slots=True)
class _Waiter:
    done: asyncio.Future[Outcome]
    chunks: asyncio.Queue[tuple[int, str]] | None


class ClusterDispatch:
    def __init__(self, queue: RoomQueue, link: NatsLink, settings: ClusterSettings) -> None:
        self.queue = queue
        self.link = link
        self.settings = settings
        self.node_id = queue.node_id
        self._waiters: dict[UUID, list[_Waiter]] = {}
        self._poller: asyncio.Task[None] | None = None

    @property
    def awaited(self) -> int:
        """Messages this process's requests are waiting for."""
        return len(self._waiters)

    async def start(self) -> None:
        await self.link.subscribe(Subjects.reply(self.node_id), self._on_reply)
        await self.link.subscribe(Subjects.chunk(self.node_id), self._on_chunk)
        self._poller = asyncio.create_task(self._poll(), name="cluster-reply-poll")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller

    # ------------------------------------------------------------------ ends arriving

    def _resolve(self, outcome: Outcome) -> None:
        for waiter in self._waiters.get(outcome.id, ()):
            if not waiter.done.done():
                waiter.done.set_result(outcome)

    async def _on_reply(self, _subject: str, data: bytes) -> None:
        item = json.loads(data)
        self._resolve(Outcome(UUID(item["id"]), item["status"], item["reply"], item["error"]))

    async def _on_chunk(self, _subject: str, data: bytes) -> None:
        item = json.loads(data)
        for waiter in self._waiters.get(UUID(item["id"]), ()):
            if waiter.chunks is not None:
                waiter.chunks.put_nowait((int(item["try"]), str(item["text"])))

    async def _poll(self) -> None:
        """Read the ends of the awaited messages from PostgreSQL (NATS may have missed them)."""
        while True:
            interval = self.settings.poll_interval if self.link.connected else 0.2
            await asyncio.sleep(min(interval, self.settings.poll_interval))
            if not self._waiters:
                continue
            try:
                for outcome in await self.queue.outcomes(list(self._waiters)):
                    self._resolve(outcome)
            except Exception as exc:
                _log.warning("polling for replies failed: {}", exc)

    # ------------------------------------------------------------------ sending

    def _identify(self, runtime: AgentRuntime, message: Memory, key: str | None) -> Memory:
        if key is None:
            return message
        return message.model_copy(update={"id": message_id_for(runtime.agent_id, key)})

    async def _submit(
        self, message: Memory, key: str | None, waiter: _Waiter, stream: bool
    ) -> None:
        self._waiters.setdefault(message.id, []).append(waiter)
        print_ = None if key is None else fingerprint(message)
        taken = await self.queue.enqueue(
            message,
            idem_key=key,
            fingerprint=print_,
            origin=self.node_id,
            stream=stream,
            limit=self.settings.backlog_limit,
            retry_after=self.settings.retry_after,
        )
        if key is not None and print_ is not None and taken.fingerprint is not None:
            check_fingerprint(taken.fingerprint, print_, key)  # `KeyReused`: nothing queued
        if taken.duplicate:  # it may have ended long ago
            for outcome in await self.queue.outcomes([message.id]):
                self._resolve(outcome)
        await self.link.publish(Subjects.WAKE, b"")

    def _forget(self, message_id: UUID, waiter: _Waiter) -> None:
        waiters = self._waiters.get(message_id, [])
        if waiter in waiters:
            waiters.remove(waiter)
        if not waiters:
            self._waiters.pop(message_id, None)

    async def _wait(self, message_id: UUID, waiter: _Waiter) -> Reply:
        try:
            outcome = await asyncio.wait_for(
                asyncio.shield(waiter.done), self.settings.reply_timeout
            )
        except TimeoutError:
            raise ReplyTimeout(
                f"no reply within {self.settings.reply_timeout:g} s; message {message_id} is"
                " still queued (send it again with the same Idempotency-Key to wait for it)"
            ) from None
        return _reply_of(outcome)

    async def process(self, runtime: AgentRuntime, message: Memory, key: str | None) -> Reply:
        message = self._identify(runtime, message, key)
        waiter = _Waiter(asyncio.get_running_loop().create_future(), None)
        try:
            await self._submit(message, key, waiter, stream=False)
            return await self._wait(message.id, waiter)
        finally:
            self._forget(message.id, waiter)

    async def stream(self, runtime: AgentRuntime, message: Memory, key: str | None) -> RemoteStream:
        """The message queued (errors raised here, before any chunk), its chunks to come."""
        message = self._identify(runtime, message, key)
        waiter = _Waiter(asyncio.get_running_loop().create_future(), asyncio.Queue())
        try:
            await self._submit(message, key, waiter, stream=True)
        except BaseException:
            self._forget(message.id, waiter)
            raise
        stream = RemoteStream(lambda: self._forget(message.id, waiter))
        stream._chunks = self._stream(message, waiter, stream)
        return stream

    async def _stream(self, message: Memory, waiter: _Waiter, sink: RemoteStream) -> Any:
        assert waiter.chunks is not None
        sent = ""
        texts: dict[int, str] = {}
        try:
            while not waiter.done.done():
                get: asyncio.Future[tuple[int, str]] = asyncio.ensure_future(waiter.chunks.get())
                both: list[asyncio.Future[Any]] = [get, waiter.done]
                await asyncio.wait(
                    both,
                    timeout=self.settings.reply_timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not get.done():
                    get.cancel()
                    if not waiter.done.done():
                        raise ReplyTimeout(
                            f"no reply within {self.settings.reply_timeout:g} s; message"
                            f" {message.id} is still queued"
                        )
                    break
                attempt, text = get.result()
                # a message tried again streams again: pass on only what extends the text sent
                texts[attempt] = texts.get(attempt, "") + text
                if texts[attempt].startswith(sent) and len(texts[attempt]) > len(sent):
                    yield texts[attempt][len(sent) :]
                    sent = texts[attempt]
            reply = _reply_of(waiter.done.result())
            if reply.text.startswith(sent) and len(reply.text) > len(sent):
                yield reply.text[len(sent) :]
            sink.reply = reply
        finally:
            self._forget(message.id, waiter)


class RemoteStream:
    """The `ReplyStream` interface over a message processed by a worker."""

    def __init__(self, forget: Callable[[], None]) -> None:
        self.reply: Reply | None = None
        self._chunks: Any = None
        self._forget = forget

    def __aiter__(self) -> AsyncIterator[str]:
        it: AsyncIterator[str] = self._chunks
        return it

    async def aclose(self) -> None:
        if self._chunks is not None:
            await self._chunks.aclose()
        self._forget()  # also when closed before its first chunk (the generator never ran)


def _reply_of(outcome: Outcome) -> Reply:
    if outcome.status == "parked" or outcome.reply is None:
        raise MessageParked(
            f"message {outcome.id} was parked after failing repeatedly: {outcome.error}"
        )
    return Reply.model_validate_json(outcome.reply)
