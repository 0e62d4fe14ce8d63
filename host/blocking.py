"""Noticing a blocked event loop, and saying which plugin's component blocked it.

One event loop serves every agent, the HTTP API and ``/health``: a provider calling
``time.sleep(2)`` (or a sync HTTP client, or a long CPU loop) freezes them all. `LoopMonitor`
notices it from a thread of its own: the loop stamps a heartbeat every few milliseconds, and a
heartbeat overdue by more than the threshold (``loop_monitor.threshold``, 100 ms by default)
means one callback has been running that long. It then logs a WARNING naming what was running,
and another when the loop is free again, with how long it was held.

What was running comes from `MARKS`: the pipeline and the event bus note, per asyncio task, the
component they are calling (a provider, an action, an evaluator, an event handler, a plugin's
setup) before calling it and restore the previous note after; the monitor reads the note of
the loop's current task. A note is two dict operations on the hot path, no formatting: the
label is made only when a block is reported. The blocked thread's innermost Python frame
(file, line, function) is reported too, for what no note covers.

Sync callbacks that must block (a sync client library) are declared ``blocking=True`` on their
`Provider`, `Action`, `Evaluator` or `EventHandler`: they run in a worker thread
(``asyncio.to_thread``) and the loop stays free.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

from loguru import logger

__all__ = ["MARKS", "Component", "LoopMonitor", "describe"]

MARKS: Final[dict[asyncio.Task[Any] | None, object]] = {}
"""The asyncio task -> what it is calling now (a `Component`, or a bus subscription)."""


@dataclass(slots=True)
class Component:
    """A plugin component being called, noted in `MARKS` for the monitor (use as ``with``)."""

    kind: str
    """provider, action, action validate, evaluator, evaluator validate, setup, ..."""
    name: str
    owner: str | None = None
    """The plugin that registered it."""
    _task: asyncio.Task[Any] | None = None
    _previous: object = None

    def __enter__(self) -> Component:
        task = self._task = asyncio.current_task()
        self._previous = MARKS.get(task)
        MARKS[task] = self
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._previous is None:
            MARKS.pop(self._task, None)
        else:
            MARKS[self._task] = self._previous

    def __str__(self) -> str:
        owner = f" of plugin {self.owner}" if self.owner else ""
        return f"{self.kind} {self.name!r}{owner}"


def describe(mark: object) -> tuple[str, str | None]:
    """(what was running, the plugin it belongs to) for a `MARKS` value."""
    if isinstance(mark, Component):
        return str(mark), mark.owner
    label = getattr(mark, "label", None)
    if label is not None:  # a bus subscription (HandlerSubscription)
        owner = getattr(mark, "owner", None)
        event = getattr(getattr(mark, "event", None), "name", None) or "every event"
        by = f" of plugin {owner}" if owner else ""
        return f"event handler {label} for {event}{by}", owner
    return "an unnamed callback", None


class LoopMonitor:
    """Watches the running event loop from a daemon thread (see the module docstring)."""

    def __init__(self, threshold: float = 0.1) -> None:
        if not threshold > 0:
            raise ValueError(f"loop_monitor.threshold must be seconds > 0, got {threshold!r}")
        self.threshold = threshold
        self.interval = min(threshold / 4, 0.05)
        """Seconds between heartbeats (and between the thread's checks)."""
        self.blocks = 0
        """Blocks reported since start."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching the running loop (call from it)."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._beat()
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="agenthost-loop-monitor")
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and the heartbeat (idempotent)."""
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _beat(self) -> None:
        self._last = time.monotonic()
        assert self._loop is not None
        self._timer = self._loop.call_later(self.interval, self._beat)

    def _watch(self) -> None:
        reported: float | None = None  # the heartbeat a reported block followed
        what = ""
        owner: str | None = None
        level = "WARNING"
        while not self._stop.wait(self.interval):
            last = self._last
            if reported is not None and last != reported:
                held = max(last - reported - self.interval, 0.0)
                logger.bind(plugin=owner or "host").log(
                    level, "event loop was blocked for {:.2f} s by {}", held, what
                )
                reported = None
            overdue = time.monotonic() - last - self.interval
            if reported is None and overdue > self.threshold and not self._stop.is_set():
                reported = last
                what, owner, where, named = self._culprit()
                self.blocks += 1
                # What no component note covers (the host's own start-up work, a test
                # driving the loop synchronously, a collection pause) is only a DEBUG line.
                level = "WARNING" if named else "DEBUG"
                logger.bind(plugin=owner or "host").log(
                    level,
                    "event loop blocked for over {:.0f} ms by {} (at {}); every agent and the"
                    " HTTP API wait meanwhile: await instead of blocking, or declare a sync"
                    " callback blocking=True to run it in a thread",
                    1000 * self.threshold,
                    what,
                    where,
                )

    def _culprit(self) -> tuple[str, str | None, str, bool]:
        """What the loop's current task is calling, its plugin, the blocked frame, and
        whether a component note named it."""
        loop = self._loop
        try:
            task = asyncio.current_task(loop) if loop is not None else None
        except RuntimeError:
            task = None
        mark = MARKS.get(task)
        what, owner = describe(mark)
        if mark is None and task is not None:
            what = f"task {task.get_name()}"
        frame = sys._current_frames().get(self._loop_thread)
        where = "unknown"
        if frame is not None:
            code = frame.f_code
            where = f"{code.co_filename}:{frame.f_lineno} in {code.co_name}"
        return what, owner, where, mark is not None
