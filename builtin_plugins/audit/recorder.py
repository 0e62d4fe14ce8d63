"""`AuditRecorder`: turns bus events into domain events and appends them off the hot path.

`record` runs inside ``emit`` and only builds the event's envelope (agent, message, time) and
queues it with the payload. A writer task wakes every ``flush_interval``, converts the queued
payloads to JSON (secrets masked) and appends each run of consecutive events of one aggregate
as one transaction. (Converting on a worker thread measured no faster: it holds the GIL in long
stretches while the event loop waits.) `flush` waits until everything recorded so far is stored.
A failed append is retried with backoff; events are dropped (counted, and logged with their
types) only after the last retry, so a store outage never blocks or crashes agents.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, NamedTuple
from uuid import UUID, uuid4

from loguru import logger
from pydantic import BaseModel

from contracts.eventstore import DomainEvent, EventStore
from host.eventstore.recording import payload_data, schema_version_of

from .settings import AuditSettings

__all__ = ["HOST_AGGREGATE", "AuditRecorder", "aggregate_of", "correlation_of"]

EMBEDDING_KEYS = frozenset({"embedding", "vectors"})
"""Keys emptied unless ``record_embeddings``: memory embeddings and embedding model outputs
(replay recomputes those with the local embedding model)."""

HOST_AGGREGATE = "host"
"""Aggregate of events that belong to no agent (plugin loaded/reloaded, ...)."""


_CURRENT: ContextVar[tuple[str, UUID | None, str | None] | None] = ContextVar(
    "audit_current_message", default=None
)
"""(agent aggregate, message id, room id) of the message being processed in this task: set when
its ``message:received`` is recorded, so events whose payload does not name the agent or the
message (``model:used`` from the model registry) are still filed under them."""


def _field(payload: object, name: str) -> Any:
    if isinstance(payload, BaseModel):
        # Fields live in __dict__; a missing-attribute getattr on a model raises (slowly).
        found = payload.__dict__.get(name)
        if found is None and payload.__pydantic_extra__:
            found = payload.__pydantic_extra__.get(name)
        return found
    if isinstance(payload, Mapping):
        return payload.get(name)
    return getattr(payload, name, None)


def _names_agent(payload: object) -> bool:
    """Whether the payload has an (unset) ``agent_id`` field: it belongs to some agent."""
    if isinstance(payload, BaseModel):
        return "agent_id" in type(payload).model_fields
    if isinstance(payload, Mapping):
        return "agent_id" in payload
    return hasattr(payload, "agent_id")


def _as_uuid(value: Any) -> UUID | None:
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            return None
    return None


def aggregate_of(payload: object) -> str:
    """The agent a payload belongs to (``agent_id`` or ``agent.agent_id``), else the host."""
    agent = _field(payload, "agent_id")
    if agent is None:
        nested = _field(payload, "agent")
        agent = _field(nested, "agent_id") if nested is not None else None
    return str(agent) if agent is not None else HOST_AGGREGATE


def correlation_of(event_type: str, payload: object) -> UUID | None:
    """The id of the incoming message an event belongs to, when the payload says.

    Action and model payloads carry ``message_id``; a reply carries ``in_reply_to``; a message
    or memory payload points at its memory, which is the incoming message itself or a reply
    (``content.in_reply_to``)."""
    for key in ("message_id", "in_reply_to"):
        found = _as_uuid(_field(payload, key))
        if found is not None:
            return found
    for key in ("message", "memory"):
        inner = _field(payload, key)
        if inner is not None:
            return _memory_correlation(inner)
    if _field(payload, "content") is not None:  # a bare Memory
        return _memory_correlation(payload)
    return None


def _memory_correlation(memory: object) -> UUID | None:
    content = _field(memory, "content")
    replied = _as_uuid(_field(content, "in_reply_to")) if content is not None else None
    return replied or _as_uuid(_field(memory, "id"))


class _Envelope(NamedTuple):
    """A recorded event before its payload is converted (built inside ``emit``)."""

    event_type: str
    aggregate_id: str
    correlation_id: UUID | None
    metadata: dict[str, Any]
    timestamp: datetime
    schema_version: int


class AuditRecorder:
    """Records bus events into an `EventStore`, per agent, in the background."""

    def __init__(self, store: EventStore, settings: AuditSettings | None = None) -> None:
        self.store = store
        self.settings = settings or AuditSettings()
        self.recorded = 0
        """Events appended so far."""
        self.dropped = 0
        """Events lost after every retry failed (logged)."""
        self._queue: asyncio.Queue[tuple[_Envelope, object] | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._log = logger.bind(plugin="audit")
        self._drop = frozenset() if self.settings.record_embeddings else EMBEDDING_KEYS

    def wants(self, event_type: str) -> bool:
        return self.settings.wants(event_type)

    def to_domain_event(self, event_type: str, payload: object) -> DomainEvent:
        """The domain event recording `payload` of bus event `event_type` (secrets masked)."""
        return self._with_data(self._envelope(event_type, payload), payload)

    def _envelope(self, event_type: str, payload: object) -> _Envelope:
        """The event without its data: who, which message, when. Cheap; runs in ``emit``,
        where the current message (`_CURRENT`) is known."""
        metadata: dict[str, Any] = {}
        aggregate = aggregate_of(payload)
        correlation = correlation_of(event_type, payload)
        room = _field(payload, "room_id")
        current = _CURRENT.get()
        if current is not None and (
            aggregate == current[0] or (aggregate == HOST_AGGREGATE and _names_agent(payload))
        ):
            aggregate = current[0]
            correlation = correlation or current[1]
            room = room or current[2]
        if room is not None:
            metadata["room_id"] = str(room)
        owner = _field(payload, "owner") or _field(payload, "plugin")
        if isinstance(owner, str):
            metadata["plugin"] = owner
        if event_type == "message:received" and aggregate != HOST_AGGREGATE:
            _CURRENT.set((aggregate, correlation, None if room is None else str(room)))
        elif event_type == "message:sent":
            _CURRENT.set(None)
        return _Envelope(
            event_type,
            aggregate,
            correlation,
            metadata,
            datetime.now(UTC),
            schema_version_of(payload),
        )

    def _with_data(self, envelope: _Envelope, payload: object) -> DomainEvent:
        data = payload_data(payload, self.settings.redact_keys, self._drop)
        # Built without validation: every field is known-good and `data` is JSON by
        # construction; validating each recorded prompt again cost as much as recording it.
        return DomainEvent.model_construct(
            id=uuid4(),
            aggregate_id=envelope.aggregate_id,
            event_type=envelope.event_type,
            data=data,
            schema_version=envelope.schema_version,
            timestamp=envelope.timestamp,
            version=0,
            position=None,
            causation_id=None,
            correlation_id=envelope.correlation_id,
            metadata=envelope.metadata,
        )

    def _convert(self, items: list[tuple[_Envelope, object]]) -> list[DomainEvent]:
        """Payloads to JSON data; a payload that cannot be converted is logged and left out
        (the caller counts it as dropped)."""
        out: list[DomainEvent] = []
        for envelope, payload in items:
            try:
                out.append(self._with_data(envelope, payload))
            except Exception as exc:
                self._log.opt(exception=exc).error(
                    "audit cannot record {}: {}", envelope.event_type, exc
                )
        return out

    def record(self, event_type: str, payload: object) -> None:
        """Queue `payload` (of bus event `event_type`) for the trail if the settings want it.

        Only the envelope is built here; converting the payload to JSON and appending happen in
        the background, so ``emit`` pays a few microseconds."""
        if not self.settings.wants(event_type):
            return
        try:
            envelope = self._envelope(event_type, payload)
        except Exception as exc:  # a payload we cannot even address must not break emit
            self._log.opt(exception=exc).error("audit cannot record {}: {}", event_type, exc)
            self.dropped += 1
            return
        self._queue.put_nowait((envelope, payload))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(
                self._drain(), name="audit-writer"
            )

    async def flush(self) -> None:
        """Wait until every event recorded so far is stored (or dropped after retries)."""
        await self._queue.join()

    async def aclose(self) -> None:
        """Flush, then stop the writer."""
        await self.flush()
        if self._writer is not None and not self._writer.done():
            self._queue.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        self._writer = None

    async def _drain(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                self._queue.task_done()
                return
            if self.settings.flush_interval > 0:
                # Let a burst accumulate: one transaction per interval, not one per event.
                await asyncio.sleep(self.settings.flush_interval)
            batch = [first]
            stop = False
            while len(batch) < self.settings.max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stop = True
                    break
                batch.append(item)
            try:
                events = self._convert(batch)
                self.dropped += len(batch) - len(events)
                await self._append(events)
            finally:
                for _ in range(len(batch) + int(stop)):
                    self._queue.task_done()
            if stop:
                return

    async def _append(self, batch: list[DomainEvent]) -> None:
        """Append `batch` as runs of consecutive same-aggregate events, in order."""
        runs: list[list[DomainEvent]] = []
        for event in batch:
            if runs and runs[-1][0].aggregate_id == event.aggregate_id:
                runs[-1].append(event)
            else:
                runs.append([event])
        for run in runs:
            for attempt in range(self.settings.retries + 1):
                try:
                    await self.store.append_events(run[0].aggregate_id, run)
                    self.recorded += len(run)
                    break
                except Exception as exc:
                    if attempt == self.settings.retries:
                        self.dropped += len(run)
                        self._log.opt(exception=exc).error(
                            "audit dropped {} event(s) ({}) of {} after {} attempts: {}",
                            len(run),
                            ", ".join(sorted({e.event_type for e in run})),
                            run[0].aggregate_id,
                            attempt + 1,
                            exc,
                        )
                    else:
                        await asyncio.sleep(self.settings.retry_delay * 2**attempt)
