"""`Deadlines`: coarse timeouts for many short awaits, one sweeper task instead of a timer each.

``asyncio.timeout()`` schedules and cancels a timer per call, about 4 µs on this project's
machines: more than a model call through the registry or an event handler costs otherwise.
Timeouts here are long (seconds) and only there to stop a hung call, so a deadline checked
every `resolution` seconds is precise enough: a call runs at most `resolution` past its limit.
Registering a deadline is a dict insert; the sweeper cancels the task that owns an expired one,
and `expired` tells the caller its CancelledError was a timeout.

For a run of awaits one after the other (the event bus awaiting an emit's handlers), `hold`
gives one `Deadline` for the whole run, and each await arms it with a single attribute store:
``deadline.armed = step``, where `step` (an event handler's subscription) carries its own
``limit`` in seconds. No clock is read per await: the sweeper notes when it first sees a step
armed and expires it `limit` seconds later, so such an await runs at most two resolutions past
its limit. `Deadline` objects are pooled: holding one is a list pop, not an allocation.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Deadline", "Deadlines", "Step"]


class Step(Protocol):
    """What a held deadline is armed with: anything with a limit in seconds."""

    @property
    def limit(self) -> float | None: ...


def _task_lookup() -> Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None]:
    """The running task of a loop without `asyncio.current_task`'s Python frame on CPython
    3.11 (there it is Python code, about as costly as a deadline; from 3.12 on it is C)."""
    tasks = getattr(asyncio.tasks, "_current_tasks", None)
    if asyncio.current_task.__module__ == "asyncio.tasks" and isinstance(tasks, dict):
        return tasks.get
    return asyncio.current_task


_task_of = _task_lookup()
_running_loop = asyncio.get_running_loop


class Deadline:
    """One task's re-armable deadline (`Deadlines.hold`), released once when its run ends."""

    __slots__ = ("armed", "expired", "seen", "since", "task")

    def __init__(self) -> None:
        self.armed: Step | None = None
        """The step being awaited (set by the caller before each await); None: disarmed."""
        self.expired = False
        """Set by the sweeper when it cancelled `task` for this deadline."""
        self.task: asyncio.Task[Any] | None = None
        self.seen: Step | None = None
        """The sweeper's: the step it saw armed last, and since when (monotonic)."""
        self.since = 0.0

    def timed_out(self) -> bool:
        """After an await of the run ended abnormally: whether the sweeper cancelled it and
        that is the task's only cancellation (a timeout). Disarms the deadline either way."""
        self.armed = None
        if not self.expired:
            return False
        self.expired = False
        task = self.task
        return task is None or task.uncancel() == 0


class Deadlines:
    """Deadlines for the current task; see the module docstring."""

    def __init__(self, resolution: float = 0.25) -> None:
        self.resolution = resolution
        self._due: dict[int, tuple[float, asyncio.Task[object]]] = {}
        self._expired: set[int] = set()
        self._keys = itertools.count()
        self._sweeper: asyncio.Task[None] | None = None
        self._sweeping: asyncio.AbstractEventLoop | None = None
        """The loop the sweeper runs in, while it runs."""
        self._pool: list[Deadline] = []
        """Every `Deadline` `hold` handed out, held or free (as many as runs ever went on at
        once): reused, and swept while held."""
        self._free: list[Deadline] = []
        self._holding = 0

    def start(self, seconds: float) -> int:
        """Cancel the current task if it still holds this deadline in `seconds`; the key to
        pass to `finish`."""
        task = asyncio.current_task()
        key = next(self._keys)
        if task is None:
            return key
        self._due[key] = (time.monotonic() + seconds, task)
        loop = task.get_loop()
        if self._sweeping is not loop:
            self._start_sweeper(loop)
        return key

    def finish(self, key: int) -> bool:
        """Release the deadline; True if it expired and that is the only cancellation of the
        task (the caller turns the CancelledError into a timeout)."""
        self._due.pop(key, None)
        if key in self._expired:
            self._expired.discard(key)
            task = asyncio.current_task()
            # Another cancellation pending (the caller's own, or an enclosing deadline of the
            # same sweep) wins: the CancelledError must go on up, not become a timeout.
            return task is None or task.uncancel() == 0
        return False

    def hold(self) -> Deadline:
        """A disarmed deadline for the current task, swept until `release`d."""
        free = self._free
        if free:
            deadline = free.pop()
        else:
            deadline = Deadline()
            self._pool.append(deadline)
        loop = _running_loop()
        deadline.task = _task_of(loop)
        deadline.seen = None
        self._holding += 1
        if self._sweeping is not loop:
            self._start_sweeper(loop)
        return deadline

    def release(self, deadline: Deadline) -> None:
        """Stop sweeping `deadline` (at the end of its run, however it ended)."""
        if deadline.expired:
            # cancelled after its last await ended: a timeout of nobody, so withdrawn
            deadline.expired = False
            if deadline.task is not None:
                deadline.task.uncancel()
        deadline.armed = None
        deadline.task = None
        self._holding -= 1
        self._free.append(deadline)

    def _start_sweeper(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweeping = loop
        self._sweeper = loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._due or self._holding:
                await asyncio.sleep(self.resolution)
                now = time.monotonic()
                for key, (deadline, task) in list(self._due.items()):
                    if deadline <= now and self._due.pop(key, None) is not None:
                        self._expired.add(key)
                        task.cancel()
                for held in self._pool:
                    self._check(held, now)
        finally:
            if self._sweeping is loop:
                self._sweeping = None

    @staticmethod
    def _check(held: Deadline, now: float) -> None:
        step, task = held.armed, held.task
        if step is None or task is None:
            held.seen = None
        elif held.seen is not step:
            held.seen, held.since = step, now  # a new await: its limit counts from now
        elif not held.expired and step.limit and now - held.since >= step.limit:
            held.expired = True
            held.armed = None
            task.cancel()
