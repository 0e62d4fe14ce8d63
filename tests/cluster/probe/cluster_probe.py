"""``cluster_probe``: a model plugin the cluster tests install into member processes (through
PYTHONPATH: the dist-info beside it makes it an entry point like any installed plugin).

TEXT_LARGE answers ``re: <message>`` after ``CLUSTER_PROBE_DELAY`` seconds (streamed word by
word); a message containing ``HANG`` takes ``CLUSTER_PROBE_HANG`` seconds (a worker to kill or
pause mid-message); one containing ``POISON`` fails (a bad request: no fallback), so it is parked.
Crashes (kill -9) at named pipeline points with ``CLUSTER_PROBE_CRASH`` (see `crash`).
Replies sent by other processes (the cluster event ``from_cluster(MESSAGE_SENT)``) are noted in
the file ``CLUSTER_PROBE_EVENTS`` names.

The action ``probe_edit`` (keyword ``EDIT``) changes the room's memory ``note keep`` to ``note kept
by <node>`` and deletes ``note drop``; a message containing ``SLOW`` then waits
``CLUSTER_PROBE_HANG`` seconds in its ``MESSAGE_SENT`` handler (after the edit, before the
commit), noting ``<pid> slow`` in ``CLUSTER_PROBE_EVENTS`` first.

With ``CLUSTER_PROBE_TRIES`` naming a file, each ``MESSAGE_RECEIVED`` and ``MESSAGE_COMMITTED``
handled is noted there as ``<pid> <event> <message id> <try number> <idempotency key>`` (from
`current_try`).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, ClassVar

from builtin_plugins.eliza.plugin import last_message
from contracts.agent import Action, ActionContext, ActionResult
from contracts.cluster import MESSAGE_COMMITTED, current_try, from_cluster
from contracts.events import (
    MEMORY_CREATED,
    MESSAGE_RECEIVED,
    MESSAGE_SENT,
    EventHandler,
    EventPayload,
    MessagePayload,
)
from contracts.memory import Content, MemoryQuery, MemoryUpdate
from contracts.models import (
    TEXT_LARGE,
    ModelCallError,
    ModelHandler,
    TextChunk,
    TextParams,
    TextResult,
)
from contracts.plugin import Manifest, Plugin


class ProbePlugin(Plugin):
    manifest: ClassVar[Manifest] = Manifest(name="cluster_probe", description="test model")

    async def reply(self, params: TextParams) -> TextResult:
        crash("model")
        text = last_message(params)
        if "POISON" in text:
            raise ModelCallError("poisoned message", provider="cluster_probe", retryable=False)
        delay = float(os.environ.get("CLUSTER_PROBE_DELAY", "0"))
        if "HANG" in text:
            delay = float(os.environ.get("CLUSTER_PROBE_HANG", "3"))
        if delay:
            await asyncio.sleep(delay)
        return TextResult(text=f"re: {text}", model="probe")

    async def stream(self, params: TextParams) -> AsyncIterator[TextChunk]:
        result = await self.reply(params)
        words = result.text.split(" ")
        for index, word in enumerate(words):
            yield TextChunk(text=word if index == len(words) - 1 else word + " ", index=index)

    async def seen_elsewhere(self, payload: MessagePayload) -> None:
        """A reply sent by another process (``from_cluster(MESSAGE_SENT)``): noted in the file
        ``CLUSTER_PROBE_EVENTS`` names, with this process's id."""
        path = os.environ.get("CLUSTER_PROBE_EVENTS")
        if path:
            line = f"{os.getpid()} {payload.message.content.text}\n"
            await asyncio.to_thread(_append, path, line)

    async def edit(self, ctx: ActionContext) -> ActionResult:
        store = ctx.runtime.database
        node = os.environ.get("AGENTHOST_CLUSTER__NODE_ID", "?")
        for memory in await store.get_memories(MemoryQuery(room_id=ctx.message.room_id)):
            if memory.content.text == "note keep":
                content = Content(text=f"note kept by {node}")
                await store.update_memory(MemoryUpdate(id=memory.id, content=content))
            elif memory.content.text == "note drop":
                await store.delete_memory(memory.id)
        return ActionResult()

    def actions(self) -> Sequence[Action]:
        return (Action("probe_edit", "edits the room's notes", self.edit, keywords=("EDIT",)),)

    async def slow_sent(self, payload: MessagePayload) -> None:
        crash("sent")
        if "SLOW" in payload.message.content.text:
            path = os.environ.get("CLUSTER_PROBE_EVENTS")
            if path:
                await asyncio.to_thread(_append, path, f"{os.getpid()} slow\n")
            await asyncio.sleep(float(os.environ.get("CLUSTER_PROBE_HANG", "3")))

    async def note_try(self, payload: EventPayload) -> None:
        """Which try this event belongs to (`current_try`), noted in ``CLUSTER_PROBE_TRIES``."""
        path = os.environ.get("CLUSTER_PROBE_TRIES")
        attempt = current_try()
        if path:
            event = "committed" if payload.__class__.__name__ == "MessageTry" else "received"
            if attempt is None:
                line = f"{os.getpid()} {event} none\n"
            else:
                key = attempt.idempotency_key
                line = f"{os.getpid()} {event} {attempt.message_id} {attempt.number} {key}\n"
            await asyncio.to_thread(_append, path, line)

    def event_handlers(self) -> Sequence[EventHandler[Any]]:
        return (
            EventHandler(from_cluster(MESSAGE_SENT), self.seen_elsewhere),
            EventHandler(MESSAGE_RECEIVED, self.note_try),
            EventHandler(MESSAGE_COMMITTED, self.note_try),
            EventHandler(MESSAGE_RECEIVED, at("received")),
            EventHandler(MEMORY_CREATED, at("memory_created")),
            EventHandler(MESSAGE_SENT, self.slow_sent),
        )

    def models(self) -> Sequence[ModelHandler[Any, Any]]:
        return (ModelHandler(TEXT_LARGE, self.reply, stream=self.stream, priority=10),)


def _append(path: str, line: str) -> None:
    with open(path, "a") as out:
        out.write(line)


def crash(point: str) -> None:
    """kill -9 of this process at the named pipeline point, with the probability
    ``CLUSTER_PROBE_CRASH`` gives (``CLUSTER_PROBE_CRASH_POINTS``: which points, all by default).
    ``sent`` is the last before the commit: the reply is saved (held in the unit), not committed."""
    chance = float(os.environ.get("CLUSTER_PROBE_CRASH", "0"))
    points = os.environ.get("CLUSTER_PROBE_CRASH_POINTS", "received,model,memory_created,sent")
    if chance and point in points.split(",") and random.random() < chance:
        os.kill(os.getpid(), signal.SIGKILL)


def at(point: str) -> Callable[[EventPayload], Awaitable[None]]:
    async def handler(_payload: EventPayload) -> None:
        crash(point)

    return handler
