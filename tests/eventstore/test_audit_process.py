"""The audit trail's writer process (``writer: process``, the default on a SQLite file): what
it stores, what it does when it dies, and that it never doubles a batch."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from loguru import logger
from pydantic import BaseModel, SecretStr

from builtin_plugins.audit import AuditRecorder, AuditSettings
from contracts.eventstore import (
    DomainEvent,
    EncodedEvent,
    EventStoreError,
    EventStoreUnavailableError,
)
from host.eventstore import SqliteEventStore, writer_process
from host.eventstore.writer_process import CHILD, WriterProcess
from host.secrets import MASK, register


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteEventStore]:
    opened = await SqliteEventStore.open(tmp_path / "events.sqlite3", inline_appends=False)
    try:
        yield opened
    finally:
        await opened.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped) counts as gone; so does one reaped meanwhile
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def _event(n: int, aggregate: str = "a") -> EncodedEvent:
    return EncodedEvent(aggregate, "tick", f'{{"n":{n}}}', 1, datetime.now(UTC))


class Login(BaseModel):
    agent_id: str
    user: str
    password: SecretStr
    settings: dict[str, Any]


async def test_the_default_on_a_sqlite_file_appends_from_a_child_process(
    store: SqliteEventStore,
) -> None:
    recorder = AuditRecorder(store, AuditSettings(events=("*",)))
    assert recorder.process is not None
    agent = str(uuid4())
    for i in range(5):
        recorder.record("tick", {"agent_id": agent, "i": i})
    recorder.record(
        "login",
        Login(agent_id=agent, user="u", password=SecretStr("hunter2"), settings={"api_key": "sk"}),
    )
    await recorder.flush()
    pid = recorder.process.pid
    assert pid is not None and pid != os.getpid() and _alive(pid)
    events = await store.get_events(agent)
    assert [e.version for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e.data.get("i") for e in events[:5]] == list(range(5))
    assert events[5].data["password"] == "**********"
    assert events[5].data["settings"] == {"api_key": "**********"}
    await recorder.aclose()
    assert not _alive(pid), "the child exits at the recorder's clean stop"
    assert recorder.recorded == 6 and recorder.dropped == 0


async def test_thread_setting_and_memory_logs_use_no_process(
    store: SqliteEventStore,
) -> None:
    assert AuditRecorder(store, AuditSettings(writer="thread")).process is None
    memory = await SqliteEventStore.open(":memory:")
    try:
        recorder = AuditRecorder(memory, AuditSettings(events=("*",)))
        assert recorder.process is None
        recorder.record("tick", {"agent_id": "a"})
        await recorder.aclose()
        assert len(await memory.read_all()) == 1
    finally:
        await memory.close()


async def test_live_subscribers_see_the_child_s_appends_at_once(store: SqliteEventStore) -> None:
    store.poll_interval = 30.0  # only the recorder's wake-up can deliver in time
    recorder = AuditRecorder(store, AuditSettings(events=("*",), flush_interval=0))
    seen: list[int] = []

    async def follow() -> None:
        async for event in store.subscribe():
            seen.append(int(event.data["i"]))  # type: ignore[call-overload]
            if len(seen) == 3:
                return

    follower = asyncio.create_task(follow())
    started = time.perf_counter()
    for i in range(3):
        # each one appended while the subscriber waits for a wake-up: one appended while it
        # reads is missed until its next poll (the store's notifier wakes waiters only)
        await _until(lambda: store._notifier.waiting)
        recorder.record("tick", {"agent_id": "a", "i": i})
        await _until(lambda: len(seen) > i)  # noqa: B023 (awaited within the iteration)
    await asyncio.wait_for(follower, 5)
    assert seen == [0, 1, 2] and time.perf_counter() - started < 15
    await recorder.aclose()


async def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Return once `condition()` holds; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"not within {seconds} s")


async def test_a_killed_child_is_replaced_and_nothing_is_lost_or_doubled(
    store: SqliteEventStore,
) -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="ERROR", format="{message}")
    recorder = AuditRecorder(store, AuditSettings(events=("*",), retry_delay=0.01))
    try:
        assert recorder.process is not None
        recorder.record("tick", {"agent_id": "a", "i": 0})
        await recorder.flush()
        first = recorder.process.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await asyncio.to_thread(_wait_gone, first)
        for i in range(1, 4):
            recorder.record("tick", {"agent_id": "a", "i": i})
        await recorder.flush()
        assert recorder.process.pid not in (None, first)
        assert recorder.process.started == 2
        await recorder.aclose()
    finally:
        logger.remove(sink)
    events = await store.get_events("a")
    assert [e.data["i"] for e in events] == [0, 1, 2, 3]
    assert recorder.dropped == 0 and recorder.recorded == 4
    assert any(f"writer process {first}" in line and "exited" in line for line in lines)


async def test_a_batch_committed_by_a_child_that_died_before_answering_is_not_doubled(
    store: SqliteEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = store.writer_process()
    assert writer is not None
    real = writer_process._Waiter.receive
    killed: list[int] = []

    def dies_after_commit(waiter: Any, fd: int) -> Any:
        answer = real(waiter, fd)  # committed and answered; the answer is then lost with the child
        if not killed:
            pid = writer.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return None
        return answer

    monkeypatch.setattr(writer_process._Waiter, "receive", dies_after_commit)
    batch = [_event(n) for n in range(3)]
    try:
        with pytest.raises(EventStoreUnavailableError, match="writer process exited"):
            await asyncio.to_thread(writer.append_blocking, batch)
        assert await asyncio.to_thread(writer.append_blocking, batch) == 3  # the retry
        assert await asyncio.to_thread(writer.append_blocking, [_event(3)]) == 1
    finally:
        await asyncio.to_thread(writer.close)
    assert writer.started == 2
    assert [e.data["n"] for e in await store.read_all()] == [0, 1, 2, 3]


async def test_a_batch_the_log_refuses_is_an_error_and_writes_nothing(
    store: SqliteEventStore,
) -> None:
    writer = store.writer_process()
    assert writer is not None
    taken = uuid4()
    try:
        await asyncio.to_thread(writer.append_blocking, [_event(0)._replace(id=taken)])
        refused = [_event(1), _event(2)._replace(id=taken)]
        with pytest.raises(EventStoreError, match="UNIQUE") as caught:
            await asyncio.to_thread(writer.append_blocking, refused)
        assert not isinstance(caught.value, EventStoreUnavailableError)
        assert await asyncio.to_thread(writer.append_blocking, [_event(3)]) == 1
    finally:
        await asyncio.to_thread(writer.close)
    assert [e.data["n"] for e in await store.read_all()] == [0, 3]
    assert writer.started == 1


async def test_a_log_the_child_cannot_open_is_unavailable_until_it_can(tmp_path: Path) -> None:
    path = tmp_path / "later" / "events.sqlite3"  # no such directory yet
    writer = WriterProcess(path, busy_timeout=5, synchronous="NORMAL", autocheckpoint=4000)
    try:
        with pytest.raises(EventStoreUnavailableError, match="unable to open"):
            await asyncio.to_thread(writer.append_blocking, [_event(0)])
        await _create(path)
        assert await asyncio.to_thread(writer.append_blocking, [_event(1)]) == 1
    finally:
        await asyncio.to_thread(writer.close)
    assert writer.started == 1  # the same child: it opens the log again at each batch
    assert await _numbers(path) == [1]


def test_the_child_imports_only_the_standard_library_and_starts_fast() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-X",
            "importtime",
            "-c",
            f"exec(open({str(CHILD)!r}).read())",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()[1:]}
    assert "sqlite3" in imported
    assert not {"host", "contracts", "pydantic", "loguru"} & imported, imported


def test_the_child_exits_at_end_of_input_having_committed_what_it_read(tmp_path: Path) -> None:
    """What happens when the host is killed: the child reads to the end of the pipe."""
    path = tmp_path / "events.sqlite3"
    asyncio.run(_create(path))
    writer = WriterProcess(path, busy_timeout=5, synchronous="NORMAL", autocheckpoint=4000)
    writer.start()
    process = writer._process
    assert process is not None and process.stdin is not None
    from host.eventstore.sqlite import _rows
    from host.eventstore.sqlite_writer import frame

    for n in range(3):  # written, never answered: then the writer's end closes
        process.stdin.write(frame((False, _rows([_event(n)]))))
    process.stdin.close()
    assert process.wait(30) == 0
    assert asyncio.run(_numbers(path)) == [0, 1, 2]


async def _create(path: Path) -> None:
    await (await SqliteEventStore.open(path)).close()


async def _numbers(path: Path) -> list[int]:
    opened = await SqliteEventStore.open(path)
    try:
        return [int(e.data["n"]) for e in await opened.read_all()]  # type: ignore[call-overload]
    finally:
        await opened.close()


async def test_the_host_s_own_appends_and_the_child_s_share_the_file(
    store: SqliteEventStore,
) -> None:
    """A plugin appending through the store (in the host) while the trail's child appends to
    the same aggregate: SQLite's write lock orders them, versions stay gapless."""
    recorder = AuditRecorder(store, AuditSettings(events=("*",), flush_interval=0))
    for i in range(20):
        recorder.record("tick", {"agent_id": "shared", "i": i})
        await store.append_events(
            "shared", [DomainEvent(aggregate_id="shared", event_type="direct", data={"i": i})]
        )
    await recorder.aclose()
    events = await store.get_events("shared")
    assert [e.version for e in events] == list(range(1, 41))
    assert sorted(e.data["i"] for e in events if e.event_type == "tick") == list(range(20))
    assert sorted(e.data["i"] for e in events if e.event_type == "direct") == list(range(20))


async def test_a_child_that_cannot_start_is_retried_and_the_events_then_stored(
    store: SqliteEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Popen failing (no fork possible now) makes the store unavailable for that append; the
    recorder retries, and a later start succeeds: no event is lost, the writer goes on."""
    real = subprocess.Popen
    failures = [OSError(11, "Resource temporarily unavailable")] * 2

    def popen(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(writer_process.subprocess, "Popen", popen)
    lines: list[str] = []
    sink = logger.add(lines.append, level="ERROR", format="{message}")
    recorder = AuditRecorder(store, AuditSettings(events=("*",), retry_delay=0.01))
    try:
        recorder.record("tick", {"agent_id": "a", "i": 0})
        await recorder.aclose()
    finally:
        logger.remove(sink)
    assert any("not started" in line for line in lines)
    assert not failures and recorder.process is not None and recorder.process.started == 1
    assert [e.data["i"] for e in await store.get_events("a")] == [0]
    assert recorder.dropped == 0


SECRET = "sk-writer-process-0123456789LEAK"


async def test_a_registered_secret_is_masked_before_the_pipe(
    store: SqliteEventStore, tmp_path: Path
) -> None:
    """Masking happens in the host (the encoder, then `check_encoded`'s scrub of registered
    values) before the rows are pickled to the child: its file never holds the value, not
    even in the WAL."""
    register([SECRET])
    recorder = AuditRecorder(store, AuditSettings(events=("*",)))
    recorder.record(
        "model:used",
        {"agent_id": "a", "error": f"HTTP 401: bad key {SECRET}", "echo": {"note": SECRET}},
    )
    await recorder.aclose()
    assert recorder.process is not None and recorder.process.started == 1
    (event,) = await store.get_events("a")
    assert event.data["error"] == f"HTTP 401: bad key {MASK}"
    assert event.data["echo"] == {"note": MASK}
    raw = _file_bytes(tmp_path, "events.sqlite3*")
    assert SECRET.encode() not in raw and MASK.encode() in raw


def _file_bytes(directory: Path, pattern: str) -> bytes:
    """The bytes of every file in `directory` matching `pattern` (the log, its WAL)."""
    return b"".join(path.read_bytes() for path in sorted(directory.glob(pattern)))


async def test_a_batch_larger_than_the_pipe_is_sent_whole(store: SqliteEventStore) -> None:
    """A frame of several megabytes goes out in pieces (the pipe's end is non-blocking, so a
    child that stops reading cannot hold the writer past its timeout)."""
    writer = store.writer_process()
    assert writer is not None
    text = "x" * 100_000
    batch = [
        EncodedEvent("big", "tick", f'{{"n":{n},"x":"{text}"}}', 1, datetime.now(UTC))
        for n in range(60)
    ]
    try:
        assert await asyncio.to_thread(writer.append_blocking, batch) == 60
    finally:
        await asyncio.to_thread(writer.close)
    assert [e.data["n"] for e in await store.get_events("big")] == list(range(60))
