"""`AuditRecorder`: turns bus events into stored events and appends them off the hot path.

`record` runs inside ``emit`` and only notes the payload, the time and the message being
processed. A writer thread of its own (``audit-writer``) wakes at the first event of a batch,
lets events accumulate for ``flush_interval`` (cut short by a full batch or a `flush`), converts
the whole batch (`PayloadEncoder`: one pydantic-core serialization per payload, secrets masked,
embeddings left out; the thread lets go of the GIL after each millisecond of work, so the loop
never waits long for it), then appends it, every agent's events, as one transaction: through
a child process on a SQLite file (`WriterProcess`, ``writer: process``, the default there: the
thread sends the masked rows on a pipe and waits for the commit without the GIL), on that same
thread when the store can (`SqliteEventStore.append_encoded_blocking`, ``writer: thread``),
else through `EventStore.append_encoded` on the loop, waited for by the thread. No
`DomainEvent` is built in between, and a batch wakes the loop only for `flush` waiters (the
previous design's writer task cost three loop wake-ups and two thread hand-offs a batch).

What a crash loses: events are stored at most ``flush_interval`` after they were recorded, plus
the time to convert and write one batch (about a millisecond per hundred events); a kill -9
loses at most those (tests/eventstore/test_audit_kill.py kills a real process; the writer
process commits what it was sent, then exits). A clean stop
(`aclose`, the plugin's teardown) writes everything first. A failed
append is retried with backoff; events are dropped (counted, and logged with their types) only
after the last retry, so a store outage never blocks or crashes agents. A batch the store
refuses for what it holds (`EventStoreError`: a NUL character on PostgreSQL) is not retried but
halved until the refused events are alone, so only they are dropped. What each choice saved is
measured in docs/benchmarks-eventstore.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections import deque
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from loguru import logger
from pydantic_core import to_json

from contracts.cluster import MessageTry, current_try
from contracts.eventstore import (
    EncodedEvent,
    EventStore,
    EventStoreError,
    EventStoreUnavailableError,
)
from host.storekit import PayloadEncoder, WriterProcess, is_model, schema_version_of

from .settings import AuditSettings

__all__ = ["HOST_AGGREGATE", "AuditRecorder", "aggregate_of", "correlation_of"]

EMBEDDING_KEYS = frozenset({"embedding", "vectors"})
"""Keys left out unless ``record_embeddings``: memory embeddings and embedding model outputs
(replay recomputes those with the local embedding model)."""

GIL_SLICE = 0.001
"""Seconds the writer thread converts before letting the event loop have the GIL (it would
otherwise wait up to the 5 ms switch interval for a batch of hundreds of events)."""

HOST_AGGREGATE = "host"
"""Aggregate of events that belong to no agent (plugin loaded/reloaded, ...)."""


_Current = tuple[str, UUID | None, str | None]
"""(agent aggregate, message id, room id) of the message being processed."""

_CURRENT: ContextVar[_Incoming | _Current | None] = ContextVar(
    "audit_current_message", default=None
)
"""The message being processed in this task: noted (`_Incoming`) when its ``message:received``
is recorded, so events whose payload does not name the agent or the message (``model:used``
from the model registry) are still filed under them."""


_is_model = is_model  # isinstance(x, BaseModel), asked ~10 times per recorded event


class _Attributes:
    """``.get`` over an object's attributes (a payload that is neither a model nor a dict)."""

    __slots__ = ("_obj",)

    def __init__(self, obj: object) -> None:
        self._obj = obj

    def get(self, name: str) -> Any:
        return getattr(self._obj, name, None)


_NOTHING: Mapping[str, Any] = {}


def _values(obj: object) -> Mapping[str, Any] | _Attributes:
    """Something to ``.get`` an object's fields from: a model's ``__dict__`` (fields live
    there; a missing-attribute getattr on a model raises, slowly) with its extras, a mapping
    as it is, else its attributes."""
    if _is_model(obj):
        extra = obj.__pydantic_extra__
        return {**extra, **obj.__dict__} if extra else obj.__dict__
    if isinstance(obj, Mapping):
        return obj
    return _NOTHING if obj is None else _Attributes(obj)


def _field(payload: object, name: str) -> Any:
    return _values(payload).get(name)


def _names_agent(payload: object) -> bool:
    """Whether the payload has an (unset) ``agent_id`` field: it belongs to some agent."""
    if _is_model(payload):
        return "agent_id" in type(payload).model_fields
    if isinstance(payload, Mapping):
        return "agent_id" in payload
    return hasattr(payload, "agent_id")


def _as_uuid(value: Any) -> UUID | None:
    if value is None:
        return None
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        # only a UUID's length is remembered: the text can come from a client (a message's
        # metadata sets ``content.in_reply_to``), up to 1 MB, and 4096 of those would stay
        return _parsed_uuid(value) if len(value) <= _UUID_TEXT_MAX else _uuid_of(value)
    return None


_UUID_TEXT_MAX = 45
"""The longest text `UUID()` reads: ``urn:uuid:`` and 36 characters."""


def _uuid_of(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


_parsed_uuid = functools.lru_cache(maxsize=4096)(_uuid_of)
"""`_uuid_of`, remembered (a reply's ``content.in_reply_to`` is text, read by two events)."""


_UUID_TEXT: dict[int, str] = {}


def _text(value: object) -> str:
    """``str(value)``, remembered for UUIDs (agent and room ids recur in every event)."""
    if type(value) is not UUID:
        return str(value)
    key = value.int
    found = _UUID_TEXT.get(key)
    if found is None:
        if len(_UUID_TEXT) >= 4096:
            _UUID_TEXT.clear()
        found = _UUID_TEXT[key] = str(value)
    return found


def aggregate_of(payload: object) -> str:
    """The agent a payload belongs to (``agent_id`` or ``agent.agent_id``), else the host."""
    return _aggregate(_values(payload))


def _aggregate(values: Mapping[str, Any] | _Attributes) -> str:
    agent = values.get("agent_id")
    if agent is None:
        nested = values.get("agent")
        agent = _field(nested, "agent_id") if nested is not None else None
    return _text(agent) if agent is not None else HOST_AGGREGATE


def correlation_of(event_type: str, payload: object) -> UUID | None:
    """The id of the incoming message an event belongs to, when the payload says.

    Action and model payloads carry ``message_id``; a reply carries ``in_reply_to``; a message
    or memory payload points at its memory, which is the incoming message itself or a reply
    (``content.in_reply_to``)."""
    return _correlation(_values(payload))


def _correlation(values: Mapping[str, Any] | _Attributes) -> UUID | None:
    for key in ("message_id", "in_reply_to"):
        found = _as_uuid(values.get(key))
        if found is not None:
            return found
    for key in ("message", "memory"):
        inner = values.get(key)
        if inner is not None:
            return _memory_correlation(_values(inner))
    if values.get("content") is not None:  # a bare Memory
        return _memory_correlation(values)
    return None


def _memory_correlation(memory: Mapping[str, Any] | _Attributes) -> UUID | None:
    content = memory.get("content")
    replied = _as_uuid(_field(content, "in_reply_to")) if content is not None else None
    return replied or _as_uuid(memory.get("id"))


def address(
    payload: object, current: tuple[str, UUID | None, str | None] | None
) -> tuple[str, UUID | None, str | None]:
    """(aggregate, correlation id, room id) of a payload recorded while `current` (the
    (agent, message, room) of the message being processed, or None) was the current message."""
    return _address(payload, _values(payload), current)


def _address(
    payload: object,
    values: Mapping[str, Any] | _Attributes,
    current: tuple[str, UUID | None, str | None] | None,
) -> tuple[str, UUID | None, str | None]:
    """`address`, given the payload's `_values`."""
    aggregate = _aggregate(values)
    correlation = _correlation(values)
    room = values.get("room_id")
    if current is not None and (
        aggregate == current[0] or (aggregate == HOST_AGGREGATE and _names_agent(payload))
    ):
        aggregate = current[0]
        correlation = correlation or current[1]
        room = room or current[2]
    return aggregate, correlation, None if room is None else _text(room)


class _Incoming:
    """`record`'s note of a ``message:received``: its payload and the message that was current
    before it. Whose message it is (`address`) is worked out when first needed, on the writer
    thread as it converts the event, instead of on the loop inside ``emit``: it was most of
    `record`'s cost there (issue 20). Converting in recording order, the writer works out
    each note when it converts the note's own event, so a later event finds it done."""

    __slots__ = ("_current", "_own", "before", "done", "payload")

    def __init__(self, payload: object, before: _Incoming | _Current | None) -> None:
        self.payload = payload
        self.before = before
        self._own: _Current | None = None
        self._current: _Current | None = None
        self.done = False
        """Whether `current` is worked out (then a newer note keeps it instead of this)."""

    def own(self) -> _Current:
        """The ``message:received`` event's own address (raises if the payload has none)."""
        found = self._own
        if found is None:
            found = self._own = address(self.payload, _resolved(self.before))
        return found

    def current(self) -> _Current | None:
        """The current message for the events recorded after it: this one if it belongs to
        an agent, else the one before (also if its payload cannot be addressed)."""
        if not self.done:
            try:
                own: _Current | None = self.own()
            except Exception:  # the event itself is dropped, logged, when converted
                own = None
            if own is None or own[0] == HOST_AGGREGATE:
                own = _resolved(self.before)
            self._current = own
            self.done = True
        return self._current


def _resolved(current: _Incoming | _Current | None) -> _Current | None:
    return current.current() if isinstance(current, _Incoming) else current


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _where(room: str | None, plugin: str | None) -> dict[str, object]:
    """The metadata's room and plugin, those that are set."""
    metadata = {"room_id": room, "plugin": plugin}
    return {k: v for k, v in metadata.items() if v is not None}


@functools.lru_cache(maxsize=4096)
def _metadata(room: str | None, plugin: str | None) -> str:
    """The recorded event's metadata (room, plugin) as JSON text (few distinct values)."""
    return to_json(_where(room, plugin)).decode()


def _tried(room: str | None, plugin: str | None, attempt: MessageTry) -> str:
    """The metadata of an event raised in a cluster worker's try of a message: also the try's
    number and message id (a message may be processed more than once, docs/cluster.md)."""
    tried = {"try": attempt.number, "message_id": str(attempt.message_id)}
    return to_json({**_where(room, plugin), **tried}).decode()


_new_tuple = tuple.__new__

_Recorded = tuple[str, object, _Incoming | _Current | None, datetime, MessageTry | None]
"""A recorded bus event before conversion: (event type, payload, current message, time, the
cluster try it was raised in). A ``message:received``'s current message is its own note."""


class AuditRecorder:
    """Records bus events into an `EventStore`, per agent, in the background."""

    def __init__(self, store: EventStore, settings: AuditSettings | None = None) -> None:
        self.store = store
        self.settings = settings or AuditSettings()
        self.recorded = 0
        """Events appended so far (counted by the writer thread)."""
        self._lost = 0
        """Events dropped by the writer thread (not convertible, or refused after retries)."""
        self._pending: deque[_Recorded] = deque()
        """Recorded, not yet taken by the writer (appended on the loop, taken on the writer
        thread: a deque's append and popleft are atomic)."""
        self._queued = 0
        """Events ever queued; `_done` of them are stored or dropped (the writer counts)."""
        self._done = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        """`flush` calls waiting (on the loop) for `_done` to reach their count."""
        self._closing = False
        self._flushers = 0
        self._wanted: dict[str, bool] = {}
        """`settings.wants`, per event type asked so far."""
        self._log = logger.bind(plugin="audit")
        drop = frozenset() if self.settings.record_embeddings else EMBEDDING_KEYS
        self.encoder = PayloadEncoder(self.settings.redact_keys, drop)
        """Payload to JSON text, as recorded (secrets masked, embeddings left out)."""
        self._work = threading.Event()
        """Set when the first event of a batch is queued (and by `flush`, `aclose`)."""
        self._hurry = threading.Event()
        """Set to cut the batching window short: a full batch, `flush`, `aclose`."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        """The writer thread (started by the first `record`, stopped by `aclose`)."""
        self._stopped: asyncio.Future[None] | None = None
        self.process: WriterProcess | None = None
        """The child process appending for the writer thread (``writer``: process, auto on a
        SQLite file), else None (the thread appends itself)."""
        if self.settings.writer != "thread":
            made = getattr(store, "writer_process", None)
            self.process = made() if made is not None else None

    def wants(self, event_type: str) -> bool:
        return self.settings.wants(event_type)

    def encode(self, event_type: str, payload: object) -> EncodedEvent:
        """The stored form of `payload` of bus event `event_type` (secrets masked), as if
        recorded now."""
        current = _resolved(_CURRENT.get())
        return self._encoded((event_type, payload, current, datetime.now(UTC), current_try()))

    def _encoded(self, item: _Recorded) -> EncodedEvent:
        event_type, payload, current, timestamp, attempt = item
        values = _values(payload)
        if isinstance(current, _Incoming):
            if current.payload is payload and event_type == "message:received":
                aggregate, correlation, room = current.own()  # the note of this very event
                current.current()  # done: the next note links to its result, not to it
            else:
                aggregate, correlation, room = _address(payload, values, current.current())
        else:
            aggregate, correlation, room = _address(payload, values, current)
        owner = values.get("owner") or values.get("plugin")
        plugin = owner if isinstance(owner, str) else None
        # tuple.__new__: a NamedTuple's own __new__ is a Python function (a third of this)
        return _new_tuple(
            EncodedEvent,
            (
                aggregate,
                event_type,
                self.encoder(payload),
                schema_version_of(payload),
                timestamp,
                None,  # the store draws the ids, a batch at a time
                None,
                correlation,
                _metadata(room, plugin) if attempt is None else _tried(room, plugin, attempt),
            ),
        )

    def _convert(self, items: list[_Recorded], pause: float = 0.0) -> list[EncodedEvent]:
        """Recorded events to stored form; one that cannot be converted is logged and left
        out (the caller counts it as dropped). With `pause` (seconds), the GIL is let go after
        every `pause` of work (on the writer thread: the loop waiting for the GIL would
        otherwise wait out the interpreter's 5 ms switch interval for a big batch). Not after
        every event: each release hands the GIL to the waiting loop and back, which cost more
        CPU than converting the event (~45 us against ~15 us, issue 20)."""
        out: list[EncodedEvent] = []
        clock = time.perf_counter
        due = clock() + pause
        for item in items:
            try:
                out.append(self._encoded(item))
            except Exception as exc:
                self._log.opt(exception=exc).error("audit cannot record {}: {}", item[0], exc)
            if pause and clock() >= due:
                time.sleep(0)
                due = clock() + pause
        return out

    def record(self, event_type: str, payload: object) -> None:
        """Queue `payload` (of bus event `event_type`) for the trail if the settings want it.

        This runs inside ``emit`` and only notes the payload, the time and the message being
        processed (`_CURRENT`, which only ``emit`` time knows); the writer thread converts a
        whole batch at once, later, which measured cheaper than converting each event here (a
        loop over many payloads runs with warm caches; one conversion between two pipeline
        steps runs cold). The first event of a batch wakes the writer (one `threading.Event`
        set); the others cost an append."""
        wanted = self._wanted.get(event_type)
        if wanted is None:
            wanted = self._wanted[event_type] = self.settings.wants(event_type)
        if not wanted:
            return
        current = _CURRENT.get()
        if event_type == "message:received":
            if isinstance(current, _Incoming) and current.done:
                current = current.current()  # worked out already: no chain of notes grows
            current = _Incoming(payload, current)  # addressed by the writer (`_Incoming`)
            _CURRENT.set(current)
        elif event_type == "message:sent":
            _CURRENT.set(None)
        pending = self._pending
        pending.append((event_type, payload, current, datetime.now(UTC), current_try()))
        self._queued += 1
        if self._thread is None:
            self._start(asyncio.get_running_loop())
        if len(pending) == 1:
            self._work.set()
        elif len(pending) >= self.settings.max_batch:
            self._hurry.set()

    @property
    def dropped(self) -> int:
        """Events lost: not addressable or not convertible (found by the writer thread), or
        refused by the store after every retry (each logged)."""
        return self._lost

    async def flush(self) -> None:
        """Write everything recorded so far now (no waiting out ``flush_interval``); returns
        once it is stored (or dropped after retries)."""
        if self._done >= self._queued:
            return
        done = asyncio.get_running_loop().create_future()
        self._waiters.append((self._queued, done))
        self._flushers += 1
        self._release_waiters()  # the writer may have finished before the waiter was added
        self._work.set()
        self._hurry.set()
        try:
            await done
        finally:
            self._flushers -= 1

    async def aclose(self) -> None:
        """Flush, then stop the writer thread. Cancelled (the plugin's teardown timed out),
        it kills the writer process, which the writer thread may be waiting for (stopped,
        hung): nothing of the trail outlives the host's stop."""
        try:
            await self.flush()
            self._closing = True
            self._work.set()
            self._hurry.set()
            if self._stopped is not None:
                await self._stopped
        except asyncio.CancelledError:
            self._closing = True
            self._work.set()
            if self.process is not None:
                self.process.kill()
            raise
        self._thread = None
        self._stopped = None

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._stopped = loop.create_future()
        self._thread = threading.Thread(
            target=self._writer, args=(loop, self._stopped), name="audit-writer", daemon=True
        )
        self._thread.start()

    def _writer(self, loop: asyncio.AbstractEventLoop, stopped: asyncio.Future[None]) -> None:
        """The writer thread: waits for events, lets them accumulate for ``flush_interval``,
        converts and appends them in batches; wakes the loop only for `flush` waiters."""
        process = self.process
        try:
            if process is not None:
                process.start()  # not waited for: it starts while the first batch gathers
            while True:
                try:
                    if not self._write_batch():
                        break
                except BaseException as exc:  # never expected: said, and the writer goes on
                    self._log.opt(exception=exc).error("audit writer: {}", exc)
                    time.sleep(0.05)  # no busy loop should it repeat
        finally:
            if process is not None:
                process.close()  # every batch was answered: it exits at once
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, stopped)

    def _write_batch(self) -> bool:
        """Wait for and write one batch; False once closing with nothing left."""
        pending, settings = self._pending, self.settings
        self._work.clear()
        if not pending:
            if self._closing:
                return False
            self._work.wait()
            return True
        if settings.flush_interval > 0 and not (
            self._flushers or self._closing or len(pending) >= settings.max_batch
        ):
            self._hurry.wait(settings.flush_interval)  # cut short by `flush` or a full batch
        self._hurry.clear()
        popleft = pending.popleft
        batch = [popleft() for _ in range(min(len(pending), settings.max_batch))]
        written = False
        try:
            events = self._convert(batch, GIL_SLICE)
            self._lost += len(batch) - len(events)
            self._append(events)
            written = True
        finally:
            if not written:  # something escaped the per-event and per-append handling
                self._lost += len(batch)
            self._done += len(batch)
            if self._waiters and self._loop is not None:
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self._release_waiters)
        return True

    def _release_waiters(self) -> None:
        waiting = []
        for target, done in self._waiters:
            if target <= self._done:
                if not done.done():
                    done.set_result(None)
            else:
                waiting.append((target, done))
        self._waiters = waiting

    def _store_append(self, events: list[EncodedEvent]) -> None:
        """One append of `events` from the writer thread: by the writer process, else on this
        thread for a store that can (`SqliteEventStore.append_encoded_blocking`), else on the
        loop, waited for here."""
        if self.process is not None:
            self.process.append_blocking(events)
        elif (blocking := getattr(self.store, "append_encoded_blocking", None)) is not None:
            blocking(events, json_checked=True)  # pydantic-core texts: the encoder, `_metadata`
        else:
            assert self._loop is not None
            asyncio.run_coroutine_threadsafe(self.store.append_encoded(events), self._loop).result()
        self.recorded += len(events)

    def _append(self, batch: list[EncodedEvent]) -> None:
        """Append `batch` (events of any agents, in recording order) in one transaction."""
        if not batch:
            return
        for attempt in range(self.settings.retries + 1):
            try:
                self._store_append(batch)
                return
            except EventStoreUnavailableError as exc:  # an outage: retried, as below
                failure: Exception = exc
            except EventStoreError as exc:
                # The store refused the batch for what it holds (PostgreSQL cannot store a NUL
                # character, an over-long id; or it is closed, and every part fails at once):
                # the same batch would fail again, and one event must not cost every agent's
                # events of the flush. Keep what it accepts.
                refused, error = self._split(batch, exc)
                if refused:
                    self._drop(refused, error, attempt + 1)
                return
            except Exception as exc:
                failure = exc
            if attempt == self.settings.retries:
                self._drop(batch, failure, attempt + 1)
            else:
                time.sleep(self.settings.retry_delay * 2**attempt)

    def _split(
        self, batch: list[EncodedEvent], error: Exception
    ) -> tuple[list[EncodedEvent], Exception]:
        """Append the parts of a refused `batch` the store accepts, halving it until each
        refused event is alone (in recording order, one try per part); the events refused, and
        the store's error for one of them."""
        if len(batch) == 1:
            return batch, error
        refused: list[EncodedEvent] = []
        half = len(batch) // 2
        for part in (batch[:half], batch[half:]):
            try:
                self._store_append(part)
            except EventStoreUnavailableError as exc:  # the store failed meanwhile
                refused += part
                error = exc
            except EventStoreError as exc:
                more, error = self._split(part, exc)
                refused += more
            except Exception as exc:  # the store failed meanwhile: not the events' fault
                refused += part
                error = exc
        return refused, error

    def _drop(self, events: list[EncodedEvent], error: Exception, attempts: int) -> None:
        """Count and log events lost for good."""
        self._lost += len(events)
        self._log.opt(exception=error).error(
            "audit dropped {} event(s) ({}) of {} after {} attempts: {}",
            len(events),
            ", ".join(sorted({e.event_type for e in events})),
            ", ".join(sorted({e.aggregate_id for e in events})),
            attempts,
            error,
        )
