"""`WriterProcess`: appends a SQLite event log's batches in a child process of its own.

A thread appending in this process holds the GIL for the Python half of every row (building
parameters, sqlite3's binding) while the event loop wants it: on a busy loop that CPU simply
adds to the loop's (issue 20: the audit trail's writer cost the pipeline ~20%). Here the caller
(the audit trail's writer thread) builds the rows (`sqlite._rows`: ids assigned here), pickles
them and writes one frame to a pipe; the child (`sqlite_writer`, standard library only, started
with ``python -I -S``: a few milliseconds, no package imported) inserts and commits them, then
answers with the batch's last position (it opens the log at the first batch). The caller
waits for that answer on the pipe (``os.read`` lets go of the GIL), so an append returns once
its batch is durable, as `SqliteEventStore.append_encoded_blocking` does. The bytes that leave
this process are the encoded events: already masked by whoever encoded them
(`storekit.PayloadEncoder`).

When the child dies (killed, crashed), or does not answer within `answer_timeout` (stopped,
hung: it is then killed), the append in flight raises `EventStoreUnavailableError` (logged)
and the next one starts a new child; a retried batch (the same list of events) is sent
with the same ids and marked as resent, so the child skips it if the dead one had committed it:
nothing is doubled. When this process dies, the child reads end of input (or sees that its
parent is gone), closes the log and exits (everything it read was committed before it read on).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loguru import logger

from contracts.eventstore import EncodedEvent, EventStoreError, EventStoreUnavailableError

from . import sqlite_writer
from .common import check_encoded
from .sqlite import _rows
from .sqlite_writer import HEAD, frame

__all__ = ["WriterProcess"]

if sys.platform != "win32":
    import fcntl

    F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

PIPE_BYTES = 1 << 20
"""The pipe's buffer (Linux's default, 64 KB, is less than a 20 ms batch of a busy host's
events: the writer would wait for the child to read between its writes)."""

CHILD = Path(sqlite_writer.__file__)
"""The child's script (run by path: ``-m`` would import the ``host`` package first)."""

ANSWER_GRACE = 30.0
"""Seconds a child may take to answer a batch beyond its ``busy_timeout`` (the wait for
another writer's lock, after which it answers that the log is busy): the commit, and the
checkpoint that may follow it. A child silent for longer (stopped by SIGSTOP, hung on a dead
network file system) is killed and replaced; the batch is resent."""

CLOSE_WAIT = 5.0
"""Seconds `close` waits for the child to exit. It has committed every batch by then and
only closes the log (a checkpoint of the WAL, which SQLite can be killed in safely): a child
still there after this is stopped or hung, and killed."""

SLICE = 1.0
"""Seconds of one wait for the child; a wait that took longer (this process was stopped:
Ctrl-Z, a paused VM) counts as one slice, so a child stopped and resumed with its parent is
not taken for a hung one."""


def can_start() -> bool:
    """Whether this process can start the child: ``sys.executable`` is a Python interpreter.
    Not in a frozen application (PyInstaller and the like: it is the application itself,
    which would start another copy of the host), nor where it is unknown (an embedding
    server: empty); nor on Windows (no ``poll()`` on pipes: this module only imports there)."""
    if sys.platform == "win32":
        return False
    return bool(sys.executable) and not getattr(sys, "frozen", False)


class WriterProcess:
    """Appends encoded events to the SQLite log at `path` through a child process.

    Used from one thread at a time (the audit trail's writer); `append_blocking` starts the
    child when none runs. `on_appended` is called after each committed batch (to wake the
    store's subscribers); `check_open` before each (raising `EventStoreError` once the store
    is closed: its appends fail as the store's own would)."""

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: float,
        synchronous: str,
        autocheckpoint: int,
        on_appended: Callable[[], None] = lambda: None,
        check_open: Callable[[], None] = lambda: None,
        answer_timeout: float | None = None,
    ) -> None:
        self.path = Path(os.path.abspath(path))
        """The log, absolute: a child started later (after one died) opens the same file even
        if the host's working directory changed meanwhile (the default ``data_dir`` is
        relative)."""
        self._busy_timeout = busy_timeout
        self.answer_timeout = (
            busy_timeout + ANSWER_GRACE if answer_timeout is None else answer_timeout
        )
        """Seconds to wait for the child to take a batch and answer before killing it."""
        self._options = {
            "path": str(self.path),
            "busy_timeout": busy_timeout,
            "synchronous": synchronous,
            "autocheckpoint": autocheckpoint,
        }
        self._on_appended = on_appended
        self._check_open = check_open
        self._process: subprocess.Popen[bytes] | None = None
        self._sent: tuple[list[EncodedEvent], list[tuple[Any, ...]]] | None = None
        """The last batch sent and its rows, until it is answered (kept to resend it)."""
        self._lock = threading.Lock()
        self.started = 0
        """Children started so far."""
        self._log = logger.bind(plugin="audit")

    @property
    def pid(self) -> int | None:
        """The running child's process id."""
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        """Start the child now (without waiting for it to be ready); `append_blocking` does
        it on first use otherwise."""
        with self._lock:
            if self._process is None:
                try:
                    self._spawn()
                except OSError as exc:  # no process now (fork failed): the first append retries
                    self._log.error("audit writer process for {} not started: {}", self.path, exc)

    def _spawn(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-S", str(CHILD)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        self.started += 1
        assert self._process.stdin is not None
        fd = self._process.stdin.fileno()
        if sys.platform != "win32":
            with contextlib.suppress(OSError):  # Linux: a batch of ~70 KB in one write
                fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_BYTES)
        os.set_blocking(fd, False)  # writes wait in `_Waiter`, which can give up
        with contextlib.suppress(OSError, TimeoutError):  # the first append says what failed
            _Waiter(self.answer_timeout).send(fd, frame(self._options))

    def append_blocking(self, events: Sequence[EncodedEvent]) -> int:
        """Append `events` in one transaction of the child's; returns once it is committed.
        The same list passed again after an `EventStoreUnavailableError` is resent with the
        same ids (stored at most once)."""
        self._check_open()
        with self._lock:
            sent = self._sent
            if sent is not None and sent[0] is events:
                rows, resend = sent[1], True
            else:
                batch = check_encoded(events)
                if not batch:
                    return 0
                rows, resend = _rows(batch), False
                self._sent = (events if isinstance(events, list) else list(events), rows)
            if self._process is None:
                try:
                    self._spawn()
                except OSError as exc:
                    raise EventStoreUnavailableError(
                        f"SQLite event store {self.path}: cannot start its writer process: {exc}"
                    ) from exc
            answer = self._exchange(frame((resend, rows)))
            status, detail = answer
            if status == "ok":
                self._sent = None
                self._on_appended()
                return len(rows)
            if status == "refused":  # never storable: not kept for a resend
                self._sent = None
                raise EventStoreError(f"{detail}; nothing was appended")
            raise EventStoreUnavailableError(f"SQLite event store {self.path}: {detail}")

    def _exchange(self, data: bytes) -> tuple[str, Any]:
        """Send one frame and read the child's answer; a dead child is reaped, logged and
        reported as `EventStoreUnavailableError` (the next append starts another)."""
        process = self._process
        assert process is not None and process.stdin is not None and process.stdout is not None
        waiter = _Waiter(self.answer_timeout)
        try:
            waiter.send(process.stdin.fileno(), data)
            answer = waiter.receive(process.stdout.fileno())
            if answer is not None:
                return (str(answer[0]), answer[1])
        except TimeoutError:
            self._process = None
            process.kill()  # also a stopped one; the lock it may hold goes with it
            code = _reap(process)
            self._log.error(
                "audit writer process {} for {} did not answer within {:g} s (busy_timeout"
                " + {:g} s): killed ({}); starting another",
                process.pid,
                self.path,
                self.answer_timeout,
                self.answer_timeout - self._busy_timeout,
                code,
            )
            raise EventStoreUnavailableError(
                f"SQLite event store {self.path}: its writer process did not answer within"
                f" {self.answer_timeout:g} s: killed"
            ) from None
        except OSError:
            pass
        self._process = None
        code = _reap(process)
        self._log.error(
            "audit writer process {} for {} exited ({}); starting another",
            process.pid,
            self.path,
            code,
        )
        raise EventStoreUnavailableError(
            f"SQLite event store {self.path}: its writer process exited ({code})"
        )

    def kill(self) -> None:
        """Kill the running child now, from any thread (the writer's may be waiting for it):
        the append in flight fails as the store being unavailable (the owner gave up on it:
        the plugin's teardown timed out)."""
        process = self._process
        if process is not None:
            with contextlib.suppress(OSError):
                process.kill()

    def close(self, timeout: float | None = None) -> None:
        """Let the child finish (it has answered every batch) and wait for it to exit (killed
        after `timeout` seconds, `CLOSE_WAIT` by default: it has nothing left to write)."""
        timeout = CLOSE_WAIT if timeout is None else timeout
        with self._lock:
            process, self._process = self._process, None
            if process is None:
                return
            assert process.stdin is not None and process.stdout is not None
            process.stdin.close()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._log.error(
                    "audit writer process {} for {} did not exit within {:g} s of its input's"
                    " end: killed",
                    process.pid,
                    self.path,
                    timeout,
                )
                process.kill()
                process.wait()
            process.stdout.close()


def _reap(process: subprocess.Popen[bytes]) -> int | str:
    """The exit status of a child that stopped answering (killed after a second if not)."""
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    try:
        return process.wait(1.0)
    except subprocess.TimeoutExpired:
        process.kill()
        return f"killed: {process.wait()}"


class _Waiter:
    """Sends a frame to the child and reads its answer, waiting (the GIL let go) at most
    `timeout` seconds in all, counted in slices (`SLICE`) while this process runs; raises
    `TimeoutError` when they are used up."""

    __slots__ = ("_left",)

    def __init__(self, timeout: float) -> None:
        self._left = timeout

    def _wait(self, fd: int, event: int) -> None:
        poller = select.poll()
        poller.register(fd, event)
        while True:
            if self._left <= 0:
                raise TimeoutError
            wait = min(self._left, SLICE)
            started = time.monotonic()
            ready = poller.poll(wait * 1000)
            self._left -= min(time.monotonic() - started, wait)
            if ready:  # readable, writable, or closed (then the read or write says so)
                return

    def send(self, fd: int, data: bytes) -> None:
        """Write `data` to the non-blocking `fd`."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                self._wait(fd, select.POLLOUT)

    def receive(self, fd: int) -> Any:
        """The next frame's object from `fd`; None at end of input."""
        head = self._read(fd, HEAD.size)
        if head is None:
            return None
        body = self._read(fd, HEAD.unpack(head)[0])
        return None if body is None else pickle.loads(body)

    def _read(self, fd: int, size: int) -> bytes | None:
        chunks = []
        while size:
            self._wait(fd, select.POLLIN)
            chunk = os.read(fd, min(size, PIPE_BYTES))
            if not chunk:
                return None
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)
