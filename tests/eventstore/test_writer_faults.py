"""The audit trail's writer process under an operator's faults, with real processes, signals
and files: a full disk, a stopped (hung) child, SIGTERM to the whole process group, a host
killed while a process it forked keeps the pipe open."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar, Literal

import pytest
from loguru import logger
from pydantic import BaseModel

from builtin_plugins.audit import AuditRecorder, AuditSettings
from host.eventstore import SqliteEventStore, writer_process

from .test_audit_kill import ROOT, read_until, stored
from .test_audit_process import _alive

FULL_DISK = """
import asyncio, json, resource, sys
from datetime import UTC, datetime
from pathlib import Path
from contracts.eventstore import EncodedEvent
from host.eventstore import SqliteEventStore


async def main(path: Path, writer: str) -> None:
    store = await SqliteEventStore.open(path, inline_appends=False)
    # a file size limit stands for a full disk (the writer process inherits it): SQLite
    # fails a write that would pass it (EFBIG), as it fails one on a full disk (ENOSPC)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, resource.RLIM_INFINITY))
    process = store.writer_process() if writer == "process" else None
    append = process.append_blocking if process else store.append_encoded_blocking
    errors, n = [], 0
    while not errors and n < 10_000:
        batch = [
            EncodedEvent("a", "tick", '{"n":%d,"x":"%s"}' % (n + i, "x" * 1000), 1,
                         datetime.now(UTC))
            for i in range(20)
        ]
        try:
            await asyncio.to_thread(append, batch)
            n += 20
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    if process is not None:
        process.close()
    numbers = [e.data["n"] for e in await store.read_all(limit=100_000)]
    await store.close()
    print(json.dumps({"errors": errors, "appended": n, "stored": numbers}))


asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
"""


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_a_full_disk_is_reported_as_such_and_writes_nothing_partial(
    tmp_path: Path, writer: str
) -> None:
    """SQLite may roll a transaction back itself on a full disk or an I/O error; the writer's
    ROLLBACK then failed ("cannot rollback - no transaction is active") and that error replaced
    the one that says what happened."""
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(tmp_path / "events.sqlite3"), writer],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["errors"], "the limit was never reached"
    error = result["errors"][0]
    assert "cannot rollback" not in error, error
    assert "disk I/O error" in error or "full" in error, error
    assert result["stored"] == list(range(result["appended"])), "whole batches only"


async def test_a_stopped_child_is_killed_after_its_answer_timeout_and_the_batch_resent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that stops answering (SIGSTOP here; a hung file system) held the writer thread,
    `flush()` and the host's stop forever."""
    monkeypatch.setattr(writer_process, "ANSWER_GRACE", 1.0)
    store = await SqliteEventStore.open(
        tmp_path / "events.sqlite3", busy_timeout=0.5, inline_appends=False
    )
    lines: list[str] = []
    sink = logger.add(lines.append, level="ERROR", format="{message}")
    recorder = AuditRecorder(store, AuditSettings(events=("*",), retry_delay=0.01))
    first = None
    try:
        assert recorder.process is not None
        assert recorder.process.answer_timeout == 1.5
        first = await _signal_child(recorder, signal.SIGSTOP)
        for i in range(1, 4):
            recorder.record("tick", {"agent_id": "a", "i": i})
        started = time.monotonic()
        await asyncio.wait_for(recorder.flush(), 30)
        assert time.monotonic() - started >= 1.4  # it waited its timeout first
        assert recorder.process.started == 2 and recorder.process.pid != first
        await asyncio.to_thread(_gone_within, first, 5)
        await recorder.aclose()
    finally:
        logger.remove(sink)
        if first is not None:  # the test failed: do not leave it stopped
            _kill(first)
    assert [e.data["i"] for e in await store.get_events("a")] == [0, 1, 2, 3]
    assert recorder.dropped == 0
    await store.close()
    assert any(
        f"writer process {first}" in line and "did not answer within 1.5 s" in line
        for line in lines
    ), lines


def _python(args: list[str], *, group: bool = False, stdin: bool = False) -> subprocess.Popen[str]:
    """Python running `args` from the repository (in a process group of its own: `group`;
    reading a pipe: `stdin`)."""
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE if stdin else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=group,
    )


def _kill(pid: int) -> None:
    """SIGKILL process `pid` if it still runs (a test that failed leaves nothing behind)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


async def _signal_child(recorder: AuditRecorder, sig: signal.Signals) -> int:
    """Record and flush agent ``a``'s event 0, then send `sig` to the writer process that
    stored it; its pid."""
    recorder.record("tick", {"agent_id": "a", "i": 0})
    await recorder.flush()
    assert recorder.process is not None
    pid = recorder.process.pid
    assert pid is not None
    os.kill(pid, sig)
    return pid


def _gone_within(pid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        assert time.monotonic() < deadline, f"process {pid} is still running"
        time.sleep(0.02)


async def test_sigterm_to_the_whole_process_group_is_a_clean_stop(tmp_path: Path) -> None:
    """``systemctl stop`` (KillMode=control-group) or ``kill -TERM -PGID`` signals the child
    too: it used to die at once, so the host's clean stop found it gone, logged an error and
    started another to write its last batches."""
    path = tmp_path / "events.sqlite3"
    process = _python(["-m", "tests.eventstore.audit_child", str(path), "0.02"], group=True)
    try:
        await asyncio.to_thread(read_until, process, 0.5)
        os.killpg(process.pid, signal.SIGTERM)
        out, err = await asyncio.to_thread(process.communicate, None, 60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "writer process" not in err, err
    last = out.strip().splitlines()[-1].split()
    assert last[0] == "stopped"
    assert await stored(path) == list(range(int(last[1])))


FORKING_HOST = """
import os, signal, sys, time
from datetime import UTC, datetime
from pathlib import Path
from contracts.eventstore import EncodedEvent
from host.eventstore.writer_process import WriterProcess

writer = WriterProcess(Path(sys.argv[1]), busy_timeout=5, synchronous="NORMAL",
                       autocheckpoint=4000)
writer.append_blocking([EncodedEvent("a", "tick", '{"n":0}', 1, datetime.now(UTC))])
forked = os.fork()  # a plugin's multiprocessing worker ("fork": the default on Linux)
if forked == 0:
    time.sleep(120)
    os._exit(0)
print(writer.pid, forked, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


async def test_the_child_exits_when_the_host_dies_while_a_fork_holds_the_pipe(
    tmp_path: Path,
) -> None:
    """A process forked by the host (no exec) inherits the pipe's writing end: when the host
    is killed, the child never reads end of input and stayed as long as the fork did."""
    path = tmp_path / "events.sqlite3"
    await (await SqliteEventStore.open(path)).close()
    host = _python(["-c", FORKING_HOST, str(path)])
    assert host.stdout is not None
    child, forked = map(int, (await asyncio.to_thread(host.stdout.readline)).split())
    try:
        await asyncio.to_thread(host.wait, 30)
        assert host.returncode == -signal.SIGKILL
        assert _alive(forked)
        await asyncio.to_thread(_gone_within, child, 10)
    finally:
        for pid in (child, forked):
            _kill(pid)
        host.stdout.close()
    assert await stored(path) == [0]


async def test_a_teardown_that_times_out_leaves_no_stopped_child(tmp_path: Path) -> None:
    """The plugin's teardown (``plugins.teardown_timeout``) gives up on a writer waiting for a
    stopped child: the child was left stopped until the answer timeout (a minute by default),
    after the host had stopped."""
    store = await SqliteEventStore.open(
        tmp_path / "events.sqlite3", busy_timeout=0.5, inline_appends=False
    )
    recorder = AuditRecorder(store, AuditSettings(events=("*",), retry_delay=0.01))
    assert recorder.process is not None and recorder.process.answer_timeout > 30
    pid = None
    try:
        pid = await _signal_child(recorder, signal.SIGSTOP)
        recorder.record("tick", {"agent_id": "a", "i": 1})
        thread = recorder._thread
        assert thread is not None
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(recorder.aclose(), 1.0)  # as the loader's timeout does
        await asyncio.to_thread(_gone_within, pid, 10)
        await asyncio.to_thread(thread.join, 30)
        assert not thread.is_alive()
        # the writer went on with another child while the store was open
        assert [e.data["i"] for e in await store.get_events("a")] == [0, 1]
    finally:
        if pid is not None:
            _kill(pid)
        await store.close()


async def test_a_stopped_idle_child_does_not_hold_the_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that has answered every batch only closes the log at the stop; one that does
    not exit (stopped) was waited for 30 s, as long as the plugin's whole teardown may take."""
    monkeypatch.setattr(writer_process, "CLOSE_WAIT", 0.5)
    store = await SqliteEventStore.open(tmp_path / "events.sqlite3", inline_appends=False)
    lines: list[str] = []
    sink = logger.add(lines.append, level="ERROR", format="{message}")
    recorder = AuditRecorder(store, AuditSettings(events=("*",)))
    pid = None
    try:
        assert recorder.process is not None
        pid = await _signal_child(recorder, signal.SIGSTOP)
        await asyncio.wait_for(recorder.aclose(), 10)
        assert not _alive(pid)
    finally:
        logger.remove(sink)
        if pid is not None:
            _kill(pid)
        await store.close()
    assert any(f"writer process {pid}" in line and "did not exit" in line for line in lines)


PAUSED_HOST = """
import sys, time
from datetime import UTC, datetime
from pathlib import Path
from contracts.eventstore import EncodedEvent
from host.eventstore.writer_process import WriterProcess

writer = WriterProcess(Path(sys.argv[1]), busy_timeout=3, synchronous="NORMAL",
                       autocheckpoint=4000, answer_timeout=4)
writer.start()
print("ready", flush=True)
sys.stdin.readline()  # the test holds the log's write lock now
started = time.monotonic()
event = EncodedEvent("a", "tick", '{"n":0}', 1, datetime.now(UTC))
appended = writer.append_blocking([event])
print(appended, writer.started, round(time.monotonic() - started, 1), flush=True)
writer.close()
"""


async def test_a_host_stopped_with_its_child_does_not_take_it_for_a_hung_one(
    tmp_path: Path,
) -> None:
    """Ctrl-Z (SIGSTOP to the terminal's process group) while the child waits for another
    writer's lock, for longer than the answer timeout: after SIGCONT both go on, and the wait
    counted the time stopped as one slice, so the child is not killed and replaced."""
    path = tmp_path / "events.sqlite3"
    await (await SqliteEventStore.open(path)).close()
    host = _python(["-c", PAUSED_HOST, str(path)], group=True, stdin=True)
    assert host.stdin is not None and host.stdout is not None
    try:
        assert (await asyncio.to_thread(host.stdout.readline)).strip() == "ready"
        other = await asyncio.to_thread(_lock, path)  # another writer's transaction
        try:
            host.stdin.write("go\n")
            host.stdin.flush()
            await asyncio.sleep(1.0)  # the child waits for the lock, the host for the child
            os.killpg(host.pid, signal.SIGSTOP)
            await asyncio.sleep(6.0)  # longer than answer_timeout
            os.killpg(host.pid, signal.SIGCONT)
        finally:
            other.rollback()
            other.close()
        out, err = await asyncio.to_thread(host.communicate, None, 30)
    finally:
        if host.poll() is None:
            os.killpg(host.pid, signal.SIGKILL)
    assert host.returncode == 0, err
    appended, started, waited = out.split()
    assert (appended, started) == ("1", "1"), err
    assert float(waited) >= 6.0
    assert await stored(path) == [0]


def _lock(path: Path) -> sqlite3.Connection:
    """A connection holding `path`'s write lock (an open write transaction)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    return conn


class Huge(BaseModel):
    """A payload whose class claims a schema version SQLite cannot store (a plugin's bug)."""

    schema_version: ClassVar[int] = 2**70
    agent_id: str
    i: int


@pytest.mark.parametrize("writer", ["process", "thread"])
async def test_events_sqlite_cannot_store_are_dropped_alone(
    tmp_path: Path, writer: Literal["process", "thread"], capfd: pytest.CaptureFixture[str]
) -> None:
    """A number SQLite cannot hold, a text that is not UTF-8: the writer process died of it
    (a traceback on the host's stderr, a new child per retry) and the thread retried it; the
    whole batch, every agent's events, was dropped."""
    store = await SqliteEventStore.open(tmp_path / "events.sqlite3", inline_appends=False)
    recorder = AuditRecorder(store, AuditSettings(events=("*",), writer=writer))
    try:
        recorder.record("tick", {"agent_id": "a", "i": 0})
        recorder.record("tick", Huge(agent_id="a", i=1))
        recorder.record("tick\ud800", {"agent_id": "a", "i": 2})  # not UTF-8
        recorder.record("tick", {"agent_id": "b", "i": 3})
        await recorder.aclose()
        assert [e.data["i"] for e in await store.read_all()] == [0, 3]
        assert recorder.dropped == 2 and recorder.recorded == 2
        if writer == "process":
            assert recorder.process is not None and recorder.process.started == 1
    finally:
        await store.close()
    assert "Traceback" not in capfd.readouterr().err.split("audit dropped")[0]


async def test_a_child_started_after_a_change_of_directory_writes_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default log path is relative (``data_dir: data``): a child started after the host's
    working directory changed (a plugin's ``os.chdir``) opened another file, without the
    tables, and the trail's events were dropped."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "elsewhere").mkdir()
    store = await SqliteEventStore.open(Path("data/events.sqlite3"), inline_appends=False)
    recorder = AuditRecorder(store, AuditSettings(events=("*",), retry_delay=0.01))
    try:
        first = await _signal_child(recorder, signal.SIGKILL)
        await asyncio.to_thread(_gone_within, first, 10)
        monkeypatch.chdir(tmp_path / "elsewhere")
        recorder.record("tick", {"agent_id": "a", "i": 1})
        await recorder.aclose()
        assert recorder.process.started == 2 and recorder.dropped == 0
        assert [e.data["i"] for e in await store.get_events("a")] == [0, 1]
    finally:
        await store.close()


@pytest.mark.parametrize("executable", ["frozen", "", "win32"])
async def test_no_child_where_no_python_can_be_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executable: str
) -> None:
    """In a frozen application ``sys.executable`` is the application: ``-I -S script`` started
    another copy of it; embedded, it may be empty and every start failed (the trail dropped
    every batch); Windows has no ``poll()`` on pipes. The thread writes there instead."""
    if executable == "frozen":
        monkeypatch.setattr(sys, "frozen", True, raising=False)
    elif executable == "win32":
        monkeypatch.setattr(sys, "platform", "win32")
    else:
        monkeypatch.setattr(sys, "executable", "")
    store = await SqliteEventStore.open(tmp_path / "events.sqlite3", inline_appends=False)
    try:
        assert store.writer_process() is None
        recorder = AuditRecorder(store, AuditSettings(events=("*",)))
        assert recorder.process is None
        recorder.record("tick", {"agent_id": "a", "i": 0})
        await recorder.aclose()
        assert [e.data["i"] for e in await store.get_events("a")] == [0]
    finally:
        await store.close()


async def test_children_killed_again_and_again_lose_nothing_silently_and_double_nothing(
    tmp_path: Path,
) -> None:
    """kill -9 of the writer process every 40 ms while two agents' events stream in: each
    event is stored once or counted as dropped (after its retries), versions stay gapless."""
    store = await SqliteEventStore.open(tmp_path / "events.sqlite3", inline_appends=False)
    recorder = AuditRecorder(store, AuditSettings(events=("*",), retries=10, retry_delay=0.005))
    killed: set[int] = set()
    try:
        assert recorder.process is not None
        n = 0
        deadline = time.monotonic() + 1.5
        next_kill = time.monotonic() + 0.04
        while time.monotonic() < deadline:
            for _ in range(10):
                recorder.record("tick", {"agent_id": "ab"[n % 2], "i": n, "x": "y" * 200})
                n += 1
            await asyncio.sleep(0.002)
            pid = recorder.process.pid
            if time.monotonic() >= next_kill and pid is not None:
                _kill(pid)
                killed.add(pid)
                next_kill = time.monotonic() + 0.04
        await recorder.aclose()
        stored_numbers = [e.data["i"] for e in await store.read_all(limit=1_000_000)]
        for agent in "ab":
            versions = [e.version for e in await store.get_events(agent)]
            assert versions == list(range(1, len(versions) + 1))
    finally:
        await store.close()
    assert len(killed) >= 5 and recorder.process.started > len(killed)
    assert len(stored_numbers) == len(set(stored_numbers)), "an event stored twice"
    assert len(stored_numbers) + recorder.dropped >= n, "an event lost without a count"
    assert stored_numbers == sorted(stored_numbers), "stored out of recording order"


def _present(pids: list[int]) -> list[int]:
    """Those of `pids` still in /proc: running, or exited and not reaped (zombies)."""
    return [pid for pid in pids if os.path.exists(f"/proc/{pid}")]


async def test_hosts_started_and_stopped_in_one_process_leave_no_child_and_no_fd(
    tmp_path: Path,
) -> None:
    """The test kit's use: many hosts with the audit trail in one process, one after the
    other; each one's writer process is reaped and its pipes closed at its stop."""
    from host.testing import OfflineHosts

    hosts = OfflineHosts(tmp_path)
    try:
        await hosts("audit")  # the first opens what stays open (caches, the log sink)
        await hosts.aclose()
        fds = len(os.listdir("/proc/self/fd"))
        children = []
        for n in range(4):
            host = await hosts("audit", data_dir=tmp_path / f"h{n}")
            audit = host.loader.loaded["audit"].instance
            await audit.flush()  # type: ignore[attr-defined]
            children.append(audit.recorder.process.pid)  # type: ignore[attr-defined]
            await hosts.aclose()
    finally:
        await hosts.aclose()
    assert None not in children
    assert _present(children) == [], "a writer process is running or was not reaped"
    assert len(os.listdir("/proc/self/fd")) == fds
