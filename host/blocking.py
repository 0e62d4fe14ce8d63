"""Noticing a blocked event loop, and saying which plugin's component blocked it.

One event loop serves every agent, the HTTP API and ``/health``: a provider calling
``time.sleep(2)`` (or a sync HTTP client, or a long CPU loop) freezes them all. `LoopMonitor`
notices it from a thread of its own: the loop stamps a heartbeat every few milliseconds, and a
heartbeat overdue by more than the threshold (``loop_monitor.threshold``, 100 ms by default)
means one callback has been running that long. It then logs a WARNING naming what was
running, and another when the loop is free again, with how long it was held. Unless the task
running changed meanwhile: then many ready tasks took turns in one turn of the loop, none for
that long (100 rooms at once: a turn runs each room's next step), which is a DEBUG line
naming no plugin.

What was running is read off the blocked thread's stack (``sys._current_frames``), only when a
block is noticed: the functions through which the host calls plugin code (the bus calling an
event handler, the runtime calling a provider, an action, an evaluator) are registered with
`component_site`, and the innermost of them on the stack says, from its local variables, which
component of which plugin it was calling. So the hot path pays nothing: no note is written per
call. The innermost frame (file, line, function) is reported too, for what no site covers.

Sync callbacks that must block (a sync client library) are declared ``blocking=True`` on their
`Provider`, `Action`, `Evaluator` or `EventHandler`: they run in a worker thread
(``asyncio.to_thread``) and the loop stays free.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Mapping
from types import CodeType, FrameType
from typing import Any, Final, TypeVar

from loguru import logger

from contracts.config import LoopMonitorSettings

__all__ = ["LoopMonitor", "component_site", "describe_subscription"]

F = TypeVar("F", bound=Callable[..., Any])
Describe = Callable[[Mapping[str, Any]], "tuple[str, str | None] | None"]
"""From a site frame's local variables: (what it is calling, the plugin), or None."""

_SITES: Final[dict[CodeType, Describe]] = {}


def component_site(describe: Describe) -> Callable[[F], F]:
    """Register the decorated function as one through which the host calls plugin code;
    `describe` reads what it is calling from its frame's locals (only when a block is
    noticed). The function itself is returned unchanged."""

    def register(function: F) -> F:
        _SITES[function.__code__] = describe
        return function

    return register


def component(kind: str, name: object, owner: object) -> tuple[str, str | None]:
    """The description of a plugin component: ``provider 'weather' of plugin weather``."""
    plugin = owner if isinstance(owner, str) else None
    by = f" of plugin {plugin}" if plugin else ""
    return f"{kind} {name!r}{by}", plugin


def describe_subscription(local: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """A bus frame calling a handler (its local ``sub``, a `HandlerSubscription`)."""
    sub = local.get("sub")
    label = getattr(sub, "label", None)
    if label is None:
        return None
    owner = getattr(sub, "owner", None)
    event = getattr(getattr(sub, "event", None), "name", None) or "every event"
    by = f" of plugin {owner}" if owner else ""
    return f"event handler {label} for {event}{by}", owner


def culprit(frame: FrameType | None) -> tuple[str, str | None, str] | None:
    """(what, plugin, where) from the innermost registered site on `frame`'s stack."""
    if frame is None:
        return None
    code = frame.f_code
    where = f"{code.co_filename}:{frame.f_lineno} in {code.co_name}"
    current: FrameType | None = frame
    while current is not None:
        describe = _SITES.get(current.f_code)
        if describe is not None:
            found = describe(current.f_locals)
            if found is not None:
                return found[0], found[1], where
        current = current.f_back
    return None


class LoopMonitor:
    """Watches the running event loop from a daemon thread (see the module docstring)."""

    def __init__(self, settings: LoopMonitorSettings | None = None) -> None:
        threshold = (settings if settings is not None else LoopMonitorSettings()).threshold
        if not threshold > 0:
            raise ValueError(f"loop_monitor.threshold must be seconds > 0, got {threshold!r}")
        self.threshold = threshold
        self.interval = min(threshold / 4, 0.05)
        """Seconds between heartbeats (and between the thread's checks)."""
        self.blocks = 0
        """Blocks reported since start."""
        self.busy = 0
        """Spells reported since start in which the loop did not turn for over the threshold
        while running many tasks in turn, none of them for that long (a DEBUG line each)."""
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
        turns = False  # what is reported is tasks taking turns (not yet a block)
        seen: object = self  # the task (None: a plain callback) running at the last check
        steady = time.monotonic()  # since when it has been the one running
        while not self._stop.wait(self.interval):
            running = self._running_task()
            if running is not seen:
                seen, steady = running, time.monotonic()
            last = self._last
            if reported is not None and last != reported:
                held = last - reported  # the heartbeat gap: the block, and up to one interval
                logger.bind(plugin=owner or "host").log(
                    level, "event loop was blocked for about {:.2f} s by {}", held, what
                )
                reported, turns = None, False
            if turns and time.monotonic() - steady >= self.threshold:
                # one of the tasks taking turns now holds the loop itself: a block after all
                what, owner, level = self._report_block()
                turns = False
                continue
            overdue = time.monotonic() - last - self.interval
            if reported is None and overdue > self.threshold and not self._stop.is_set():
                reported = last
                if time.monotonic() - steady < self.threshold - self.interval:
                    # Tasks taking turns, none holding the loop that long: one turn of the
                    # loop runs every task ready (100 rooms at once: each message's step of
                    # a millisecond or two), and the heartbeat waits for the next turn.
                    what, owner, level = (
                        "tasks taking turns (none holding it that long)",
                        None,
                        "DEBUG",
                    )
                    turns = True
                    self.busy += 1
                    logger.bind(plugin="host").debug(
                        "event loop busy for over {:.0f} ms running many ready tasks in turn,"
                        " none of them that long: timers and I/O wait for the turn's end",
                        1000 * self.threshold,
                    )
                    continue
                what, owner, level = self._report_block()

    def _report_block(self) -> tuple[str, str | None, str]:
        """Count and log a block by what the loop thread runs now; what, its plugin and the
        level for the line logged when it ends."""
        what, owner, where, named = self._culprit()
        self.blocks += 1
        # What no component note covers (the host's own start-up work, a test driving the
        # loop synchronously, a collection pause) is only a DEBUG line.
        level = "WARNING" if named else "DEBUG"
        logger.bind(plugin=owner or "host").log(
            level,
            "event loop blocked for over {:.0f} ms by {} (at {}); every agent and the HTTP API"
            " wait meanwhile: await instead of blocking, or declare a sync callback"
            " blocking=True to run it in a thread",
            1000 * self.threshold,
            what,
            where,
        )
        return what, owner, level

    def _culprit(self) -> tuple[str, str | None, str, bool]:
        """What the loop thread is calling, its plugin, the blocked frame, and whether a
        registered site named it."""
        frame = sys._current_frames().get(self._loop_thread)
        found = culprit(frame)
        if found is not None:
            return (*found, True)
        where = "unknown"
        if frame is not None:
            where = f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
        task = self._running_task()
        what = f"task {task.get_name()}" if task is not None else "a callback"
        return what, None, where, False

    def _running_task(self) -> asyncio.Task[Any] | None:
        """The task the loop is running now (None: a plain callback, or none)."""
        loop = self._loop
        try:
            return asyncio.current_task(loop) if loop is not None else None
        except RuntimeError:
            return None
