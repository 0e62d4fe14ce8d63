"""`AuditRecorder` against a real SQLite event store: what is recorded, how, and what never is."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
import weakref
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, ClassVar
from uuid import uuid4

import pytest
from pydantic import BaseModel, ConfigDict, SecretStr
from pydantic.dataclasses import dataclass as pydantic_dataclass

from builtin_plugins.audit import AuditRecorder, AuditSettings
from builtin_plugins.audit.recorder import HOST_AGGREGATE, _parsed_uuid, correlation_of
from contracts.eventstore import DomainEvent, EncodedEvent, EventStore, EventStoreError
from contracts.memory import Content, Memory
from contracts.models import EmbeddingResult
from contracts.vector import Vector
from host.eventstore import SqliteEventStore
from host.eventstore.keyscan import _CLASS_KEYS
from host.eventstore.recording import _PLANS, _SCHEMA_VERSIONS, MASK, payload_data


class ModelUsed(BaseModel):
    schema_version: ClassVar[int] = 2
    agent_id: str
    model_type: str
    params: dict[str, object]
    output: str
    api_key: SecretStr


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[EventStore]:
    store = await SqliteEventStore.open(tmp_path / "audit.sqlite3")
    yield store
    await store.close()


def memory(agent: str, room: str, text: str, reply_to: str | None = None) -> Memory:
    return Memory(
        agent_id=uuid4() if agent == "new" else agent,  # type: ignore[arg-type]
        entity_id=uuid4(),
        room_id=room,  # type: ignore[arg-type]
        content=Content(text=text, in_reply_to=reply_to),
        embedding=[0.1, 0.2, 0.3],
    )


async def test_records_per_agent_with_correlation(sqlite_store: EventStore) -> None:
    recorder = AuditRecorder(sqlite_store)
    agent, other, room = str(uuid4()), str(uuid4()), str(uuid4())
    incoming = memory(agent, room, "hello")
    reply = memory(agent, room, "hi there", reply_to=str(incoming.id))
    recorder.record("message:received", incoming)
    recorder.record("memory:created", incoming)
    recorder.record("message:received", memory(other, room, "elsewhere"))
    recorder.record("memory:created", reply)
    recorder.record("message:sent", reply)
    recorder.record("plugin:loaded", {"name": "weather", "version": "1.0"})
    await recorder.flush()
    assert recorder.recorded == 6 and recorder.dropped == 0

    mine = await sqlite_store.get_events(agent)
    assert [e.event_type for e in mine] == [
        "message:received",
        "memory:created",
        "memory:created",
        "message:sent",
    ]
    assert [e.version for e in mine] == [1, 2, 3, 4]
    assert {e.correlation_id for e in mine} == {incoming.id}
    assert mine[0].metadata == {"room_id": room}
    assert Memory.model_validate(mine[0].data).content.text == "hello"
    assert "embedding" not in mine[0].data  # not recorded by default
    assert Memory.model_validate(mine[2].data).embedding is None
    assert [e.event_type for e in await sqlite_store.get_events(other)] == ["message:received"]
    [loaded] = await sqlite_store.get_events(HOST_AGGREGATE)
    assert loaded.data == {"name": "weather", "version": "1.0"}
    await recorder.aclose()


async def test_secrets_are_never_recorded(sqlite_store: EventStore) -> None:
    recorder = AuditRecorder(sqlite_store)
    payload = ModelUsed(
        agent_id="a1",
        model_type="TEXT_LARGE",
        params={"prompt": "hi", "max_tokens": 20, "headers": {"Authorization": "Bearer sk-1"}},
        output="hello",
        api_key=SecretStr("sk-live-123"),
    )
    recorder.record("model:used", payload)
    recorder.record("plugin:loaded", {"settings": {"openai_api_key": "sk-2", "db_password": "p"}})
    await recorder.aclose()
    rows = await sqlite_store.read_all()
    assert "sk-" not in str([r.data for r in rows])
    model = rows[0]
    assert model.schema_version == 2
    assert model.data["api_key"] == MASK
    assert model.data["params"] == {
        "prompt": "hi",
        "max_tokens": 20,
        "headers": {"Authorization": MASK},
    }
    assert rows[1].data == {"settings": {"openai_api_key": MASK, "db_password": MASK}}
    raw = _database_bytes(Path(str(sqlite_store.path)))
    assert b"sk-live-123" not in raw and b"sk-1" not in raw and b"hello" in raw


def _database_bytes(path: Path) -> bytes:
    """The database file and its WAL, as written on disk."""
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


async def test_only_configured_events(sqlite_store: EventStore) -> None:
    settings = AuditSettings(events=("*",), exclude=("memory:created",))
    recorder = AuditRecorder(sqlite_store, settings)
    recorder.record("memory:created", {"agent_id": "a"})
    recorder.record("custom:thing", {"agent_id": "a"})
    narrow = AuditRecorder(sqlite_store, AuditSettings(events=("message:sent",)))
    narrow.record("message:received", {"agent_id": "b"})
    narrow.record("message:sent", {"agent_id": "b"})
    await recorder.aclose()
    await narrow.aclose()
    # two recorders: two writers, whose batches may commit in either order
    assert sorted((e.aggregate_id, e.event_type) for e in await sqlite_store.read_all()) == [
        ("a", "custom:thing"),
        ("b", "message:sent"),
    ]


async def test_batches_many_events_in_order(sqlite_store: EventStore) -> None:
    recorder = AuditRecorder(sqlite_store, AuditSettings(max_batch=50, events=("*",)))
    for i in range(1000):
        recorder.record("tick", {"agent_id": f"a{i % 3}", "i": i})
    await recorder.aclose()
    events = await sqlite_store.read_all(limit=5000)
    assert [e.data["i"] for e in events] == list(range(1000))
    for agent in ("a0", "a1", "a2"):
        versions = [e.version for e in await sqlite_store.get_events(agent)]
        assert versions == list(range(1, len(versions) + 1))


async def test_store_failure_is_logged_and_counted_not_raised(tmp_path: Path) -> None:
    store = await SqliteEventStore.open(tmp_path / "gone.sqlite3")
    await store.close()
    recorder = AuditRecorder(store, AuditSettings(retries=1, retry_delay=0))
    recorder.record("message:received", {"agent_id": "a"})
    await recorder.aclose()
    assert (recorder.recorded, recorder.dropped) == (0, 1)


class Refusing:
    """A store that refuses, as the engines refuse a value they cannot hold, every batch
    holding an event whose data says ``poison`` (and delegates the rest)."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.calls = 0

    async def append_encoded(self, events: Sequence[EncodedEvent]) -> int:
        self.calls += 1
        if any("poison" in e.data for e in events):
            raise EventStoreError("events cannot be appended: poison; nothing was appended")
        return await self.store.append_encoded(events)


async def test_an_event_the_store_refuses_costs_only_itself(sqlite_store: EventStore) -> None:
    store = Refusing(sqlite_store)
    recorder = AuditRecorder(store, AuditSettings(retries=3, retry_delay=0, events=("*",)))  # type: ignore[arg-type]
    for i in range(9):
        recorder.record(
            "tick", {"agent_id": "ab"[i % 2], "i": i, "text": "poison" if i == 4 else ""}
        )
    await recorder.aclose()
    assert [e.data["i"] for e in await sqlite_store.read_all()] == [0, 1, 2, 3, 5, 6, 7, 8]
    assert (recorder.recorded, recorder.dropped) == (8, 1)
    assert store.calls <= 1 + 2 * 4  # halving, not retrying a batch that cannot succeed


async def test_a_nul_character_costs_only_its_event(store: EventStore) -> None:
    # PostgreSQL cannot hold a NUL in jsonb (SQLite can): the other agents' events of the same
    # flush are kept either way.
    recorder = AuditRecorder(store, AuditSettings(retry_delay=0))
    recorder.record("message:received", {"agent_id": "a", "text": "hello"})
    recorder.record("message:received", {"agent_id": "b", "text": "bad \x00 nul"})
    recorder.record("message:sent", {"agent_id": "a", "text": "hi"})
    await recorder.aclose()
    stored = [(e.aggregate_id, e.data["text"]) for e in await store.read_all()]
    assert [s for s in stored if s[0] == "a"] == [("a", "hello"), ("a", "hi")]
    assert recorder.recorded == len(stored) and recorder.recorded + recorder.dropped == 3


def test_payload_data_shapes() -> None:
    assert payload_data("text") == {"value": "text"}
    event = DomainEvent(aggregate_id="a", event_type="t")
    assert payload_data(event)["aggregate_id"] == "a"
    assert payload_data({"token": "x", "tokens": 5}) == {"token": MASK, "tokens": 5}


async def test_flush_writes_now_and_the_interval_batches(sqlite_store: EventStore) -> None:
    recorder = AuditRecorder(sqlite_store, AuditSettings(flush_interval=3600, events=("*",)))
    for i in range(3):
        recorder.record("tick", {"agent_id": "a", "i": i})
    await asyncio.sleep(0.05)
    assert await sqlite_store.last_position() == 0  # still accumulating (one hour)
    async with asyncio.timeout(30):  # a flush that waited out the interval would fail here
        await recorder.flush()
    assert [e.data["i"] for e in await sqlite_store.read_all()] == [0, 1, 2]
    recorder.record("tick", {"agent_id": "a", "i": 3})
    async with asyncio.timeout(30):
        await recorder.aclose()
    assert recorder.recorded == 4 and await sqlite_store.get_version("a") == 4


async def test_recorded_embeddings_are_json_lists_read_back_as_vectors(
    sqlite_store: EventStore,
) -> None:
    """With ``record_embeddings`` a memory's `Vector` goes into the trail as a list of numbers
    and reads back (replay, rebuild) as an equal `Vector`; an embedding model's output too."""
    recorder = AuditRecorder(sqlite_store, AuditSettings(record_embeddings=True))
    agent, room = str(uuid4()), str(uuid4())
    incoming = memory(agent, room, "hello")
    recorder.record("memory:created", incoming)
    result = EmbeddingResult(vectors=[[0.5, -0.25]], model="hashed")
    recorder.record("model:used", {"agent_id": agent, "output": result})
    await recorder.flush()
    created, used = await sqlite_store.get_events(agent)
    assert created.data["embedding"] == incoming.embedding.tolist()  # type: ignore[union-attr]
    again = Memory.model_validate(created.data)
    assert isinstance(again.embedding, Vector) and again == incoming
    assert used.data["output"]["vectors"] == [[0.5, -0.25]]
    assert EmbeddingResult.model_validate(used.data["output"]).vector == [0.5, -0.25]
    await recorder.aclose()


async def test_batches_are_converted_and_written_off_the_event_loop(
    sqlite_store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``writer: thread``, the writer thread converts and appends (SQLite: on that
    thread, no hop back to the loop per batch); the loop's thread only queues."""
    threads: list[str] = []
    checked: list[bool] = []
    append = sqlite_store.append_encoded_blocking  # type: ignore[attr-defined]

    def spy(events: Sequence[EncodedEvent], *, json_checked: bool = False) -> int:
        threads.append(threading.current_thread().name)
        checked.append(json_checked)
        return append(events, json_checked=json_checked)  # type: ignore[no-any-return]

    monkeypatch.setattr(sqlite_store, "append_encoded_blocking", spy)
    recorder = AuditRecorder(sqlite_store, AuditSettings(events=("*",), writer="thread"))
    converted: list[str] = []
    convert = recorder._convert

    def converting(items: list[Any], pause: float = 0.0) -> list[EncodedEvent]:
        converted.append(threading.current_thread().name)
        return convert(items, pause)

    monkeypatch.setattr(recorder, "_convert", converting)
    for i in range(5):
        recorder.record("tick", {"agent_id": "a", "i": i})
    await recorder.flush()
    recorder.record("tick", {"agent_id": "a", "i": 5})
    await recorder.aclose()
    assert [e.data["i"] for e in await sqlite_store.read_all()] == list(range(6))
    assert threads and set(threads) == {"audit-writer"}
    assert set(checked) == {True}  # its texts are pydantic-core's JSON: SQLite need not parse
    assert converted and set(converted) == {"audit-writer"}
    assert threading.current_thread().name not in threads


async def test_an_error_escaping_the_writer_costs_its_batch_only(
    sqlite_store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Something escaping the writer's own handling (here SystemExit on its thread) costs
    that batch, counted; the writer goes on (no later flush waits forever)."""
    recorder = AuditRecorder(sqlite_store, AuditSettings(events=("*",)))
    append = recorder._append
    calls: list[int] = []

    def dying(batch: list[EncodedEvent]) -> None:
        calls.append(len(batch))
        if len(calls) == 1:
            raise SystemExit("the writer thread dies")
        append(batch)

    monkeypatch.setattr(recorder, "_append", dying)
    recorder.record("tick", {"agent_id": "a", "i": 0})
    async with asyncio.timeout(30):
        await recorder.flush()
    assert recorder.dropped == 1
    recorder.record("tick", {"agent_id": "a", "i": 1})
    async with asyncio.timeout(30):
        await recorder.aclose()
    assert [e.data["i"] for e in await sqlite_store.read_all()] == [1]
    assert recorder.recorded == 1


def test_a_long_in_reply_to_is_parsed_but_not_remembered() -> None:
    """A client sets ``content.in_reply_to`` through a message's metadata, up to 1 MB: the
    UUID parse cache keeps only texts of a UUID's length (4096 such would hold ~4 GB)."""
    _parsed_uuid.cache_clear()
    agent, room, replied = str(uuid4()), str(uuid4()), uuid4()
    long = memory(agent, room, "hi", reply_to="x" * 100_000)
    assert correlation_of("message:received", long) == long.id  # not a UUID: the memory's
    dashed = "-".join(replied.hex)  # 63 characters, still a UUID's text
    assert correlation_of("memory:created", memory(agent, room, "hi", dashed)) == replied
    assert _parsed_uuid.cache_info().currsize == 0
    assert correlation_of("message:sent", memory(agent, room, "hi", str(replied))) == replied
    assert _parsed_uuid.cache_info().currsize == 1  # a UUID's text is remembered


class Reading(BaseModel):
    """A payload whose config writes NaN and infinities as bare constants (not JSON)."""

    model_config = ConfigDict(ser_json_inf_nan="constants")
    value: float
    samples: list[float]


@pydantic_dataclass(config=ConfigDict(ser_json_inf_nan="constants"))
class DataReading:
    """The same as a pydantic dataclass (`keyscan` cannot see into it: the text is looked at)."""

    agent_id: str
    value: float


class Holder(BaseModel):
    agent_id: str
    reading: Any  # a model only known at run time
    typed: Reading


async def test_nan_and_infinity_of_a_constants_model_are_stored_as_json(tmp_path: Path) -> None:
    """The recorder vouches to SQLite that its texts are JSON (no json() check per row): a
    model with ``ser_json_inf_nan='constants'`` (its own, or one it holds) must not get
    ``{"value":Infinity}`` into the trail."""
    path = tmp_path / "audit.sqlite3"
    store = await SqliteEventStore.open(path)
    recorder = AuditRecorder(store)
    agent = str(uuid4())
    odd = Reading(value=float("inf"), samples=[float("nan"), -float("inf"), 1.5])
    try:
        recorder.record("model:used", Reading(value=float("nan"), samples=[]))
        recorder.record("model:used", Holder(agent_id=agent, reading=odd, typed=odd))
        recorder.record("model:used", DataReading(agent_id=agent, value=float("-inf")))
        await recorder.flush()
        assert recorder.recorded == 3 and recorder.dropped == 0
        stored = await store.get_events(agent)
        assert stored[0].data["reading"] == {"value": None, "samples": [None, None, 1.5]}
        assert stored[1].data == {"agent_id": agent, "value": None}
    finally:
        await recorder.aclose()
        await store.close()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT data, json_valid(data) FROM event_log").fetchall()
    assert len(rows) == 3 and all(valid == 1 for _, valid in rows), rows


def test_payload_classes_dropped_are_collected(sqlite_store: EventStore) -> None:
    """The encoder's and the recorder's caches per class keep no class alive: a plugin
    reloaded in dev mode (new classes each time) leaves its old classes to the collector."""
    caches: tuple[dict[Any, Any], ...] = (_CLASS_KEYS, _PLANS, _SCHEMA_VERSIONS)

    def made() -> tuple[weakref.ref[type], weakref.ref[type], list[int]]:
        class Inner(BaseModel):
            embedding: list[float]
            token_count: int

        class Outer(BaseModel):
            schema_version: ClassVar[int] = 3
            agent_id: str
            inner: Inner
            anything: Any
            extra: dict[str, Any]

        payload = Outer(
            agent_id=str(uuid4()),
            inner=Inner(embedding=[0.5], token_count=1),
            anything=Inner(embedding=[], token_count=2),
            extra={"nested": Inner(embedding=[1.0], token_count=3)},
        )
        encoded = AuditRecorder(sqlite_store).encode("model:used", payload)
        assert encoded.schema_version == 3 and '"embedding"' not in encoded.data
        return weakref.ref(Inner), weakref.ref(Outer), [len(c) for c in caches]

    inner, outer, cached = made()
    gc.collect()
    assert inner() is None and outer() is None, "a cache keeps a payload class alive"
    # their entries went with them (one each per cache; the schema version is Outer's only)
    assert [len(c) for c in caches] == [cached[0] - 2, cached[1] - 2, cached[2] - 1]


class Unaddressable:
    """A payload whose agent cannot even be read (its property raises)."""

    @property
    def agent_id(self) -> str:
        raise RuntimeError("no agent here")


async def test_message_received_is_addressed_by_the_writer_not_on_the_loop(
    sqlite_store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`record` notes a message:received's payload; its agent, message and room are worked
    out on the writer thread, once, and still file the events after it that name none."""
    import builtin_plugins.audit.recorder as recorder_module

    threads: list[str] = []
    address = recorder_module.address

    def spy(payload: object, current: Any) -> Any:
        threads.append(threading.current_thread().name)
        return address(payload, current)

    monkeypatch.setattr(recorder_module, "address", spy)
    recorder = AuditRecorder(sqlite_store)
    agent, room = str(uuid4()), str(uuid4())
    incoming = memory(agent, room, "hello")

    async def message() -> None:
        recorder.record("message:received", incoming)
        recorder.record("model:used", {"agent_id": None, "model_type": "text_large"})
        recorder.record("message:sent", memory(agent, room, "hi", reply_to=str(incoming.id)))
        recorder.record("model:used", {"agent_id": None, "model_type": "after"})

    await asyncio.create_task(message())
    await recorder.aclose()
    assert threads == ["audit-writer"]  # once, off the loop
    events = await sqlite_store.read_all()
    assert [(e.aggregate_id, e.event_type) for e in events] == [
        (agent, "message:received"),
        (agent, "model:used"),
        (agent, "message:sent"),
        (HOST_AGGREGATE, "model:used"),  # after message:sent: no current message
    ]
    assert {e.correlation_id for e in events[:3]} == {incoming.id}
    assert events[1].metadata == {"room_id": room}


async def test_an_unaddressable_message_received_costs_only_itself(
    sqlite_store: EventStore,
) -> None:
    """A message:received whose payload cannot be addressed never breaks `emit`: its event is
    dropped (counted, logged) and the events after it stay filed under the message before."""
    recorder = AuditRecorder(sqlite_store)
    agent, room = str(uuid4()), str(uuid4())
    incoming = memory(agent, room, "hello")

    async def messages() -> None:
        recorder.record("message:received", incoming)
        recorder.record("message:received", Unaddressable())  # raises only when addressed
        recorder.record("model:used", {"agent_id": None, "model_type": "text_large"})

    await asyncio.create_task(messages())
    await recorder.aclose()
    events = await sqlite_store.read_all()
    assert [(e.aggregate_id, e.event_type) for e in events] == [
        (agent, "message:received"),
        (agent, "model:used"),
    ]
    assert events[1].correlation_id == incoming.id
    assert (recorder.recorded, recorder.dropped) == (2, 1)


async def test_notes_of_messages_never_sent_do_not_chain(sqlite_store: EventStore) -> None:
    """A task that records message:received after message:received (none sent) keeps only
    the notes the writer has not worked through yet linked, not one per message."""
    from builtin_plugins.audit.recorder import _CURRENT, _Incoming

    recorder = AuditRecorder(sqlite_store, AuditSettings(flush_interval=0))
    depth = 0

    async def messages() -> None:
        nonlocal depth
        for i in range(300):
            recorder.record("message:received", memory(str(uuid4()), str(uuid4()), f"m{i}"))
            if i % 10 == 9:
                await recorder.flush()
        note: Any = _CURRENT.get()
        while isinstance(note, _Incoming):
            depth += 1
            note = note.before

    await asyncio.create_task(messages())
    await recorder.aclose()
    assert recorder.recorded == 300
    assert depth <= 11  # the notes since the last flush, and the one before them
