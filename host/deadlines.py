"""`Deadlines`: coarse timeouts for many short awaits, one sweeper task instead of a timer each.

``asyncio.timeout()`` schedules and cancels a timer per call, about 4 µs on this project's
machines: more than a model call through the registry or an event handler costs otherwise.
Timeouts here are long (seconds) and only there to stop a hung call, so a deadline checked
every `resolution` seconds is precise enough.

Two ways to put an await under a deadline:

- `start` / `finish`: register a deadline for the current task (a dict insert and pop); the
  sweeper cancels the task when it expires, and `finish` says whether the CancelledError was
  that timeout. For the rarer awaits (a detached handler, a stream's next chunk).
- `watch`: for the hot paths (the event bus awaiting an emit's handlers, the model registry
  awaiting a provider), nothing at all per await. The watched coroutine function keeps what it
  is awaiting under a deadline in a local variable ``armed`` (anything with a ``limit`` in
  seconds, or None), a plain local store. The sweeper walks the suspended coroutines of the
  loop's tasks (`asyncio.all_tasks`, ``cr_await``) every `resolution` seconds, notes when it
  first sees a frame of a watched function armed with a step, and cancels that task `limit`
  seconds later; such an await runs at most two resolutions past its limit and always gets at
  least its whole limit. The function asks `timed_out` (on a CancelledError) whether the
  sweeper cancelled it, and calls `withdraw` when its await ended otherwise (an error, or
  the callee swallowed the cancellation) or when its run ends, if `expired` is not empty: an
  expiry swallowed mid-run is withdrawn by the next sweep that sees the frame armed with
  another step (or by the function at the end of its run, whichever comes first).

The sweeper runs while anything is under a deadline and stops when a sweep finds nothing;
`ensure` (one comparison with the running loop) restarts it and returns its `Sweeper`, which a
hot path may keep and skip `ensure` for while its ``loop`` is the running loop (one comparison
instead of a lookup per call; the event bus keeps one per plan): a kept sweeper of another
loop is never relied on. As a safety net, each sweep also looks at the other loops' tasks and
starts a sweeper on a loop that has none and a watched frame suspended. A sweeper that stops
asks no other loop to start one: with a second loop alive (an app's own, in another thread)
that made the two loops start a sweeper in turn, forever, while nothing was under a deadline.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
import weakref
from collections.abc import Iterator
from types import AsyncGeneratorType, CodeType, CoroutineType, FrameType, GeneratorType
from typing import Any, Protocol

__all__ = ["STOPPED", "Deadlines", "Step", "Sweeper", "shared"]


class Step(Protocol):
    """What a watched frame is armed with: anything with a limit in seconds."""

    @property
    def limit(self) -> float | None: ...


_FOLLOWED = (CoroutineType, GeneratorType, AsyncGeneratorType)
_OPAQUE = frozenset({"async_generator_asend", "async_generator_athrow", "coroutine_wrapper"})
"""C awaitables that hide what they wait for (an async generator's ``asend``, a coroutine's
``__await__``): the coroutine or generator inside is found among their referents."""
_running_loop = asyncio.get_running_loop


class _Nowhere:
    """The `Sweeper.gauge` of a stopped sweeper: a loop running nowhere."""

    __slots__ = ()
    _thread_id = None


class _Gauge:
    """The `Sweeper.gauge` of a loop that is not asyncio's own (uvloop, ...): whether it runs,
    asked by method (asyncio's loops answer by attribute)."""

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def _thread_id(self) -> int | None:
        return 1 if self._loop.is_running() else None


_NOWHERE = _Nowhere()


class Sweeper:
    """A loop's sweeper task, whether it still runs, and its ``gauge``: what tells in one
    attribute read whether that loop runs now (``gauge._thread_id`` is None when not: asyncio's
    loop itself, whose ``_thread_id`` is set only while it runs, another loop through `_Gauge`,
    a stopped sweeper `_Nowhere`).

    A caller of `Deadlines.ensure` may keep the sweeper and skip ``ensure`` while its gauge
    says the loop runs (the event bus, once per plan: three attribute reads, where finding the
    running loop costs ~250 ns on CPython 3.11 and the thread's id ~45 ns). ``running`` alone
    would not do: a loop closed or left stopped while its sweeper was pending, without
    cancelling its tasks first (a loop run by hand with ``run_until_complete``; `asyncio.run`
    and pytest-asyncio cancel them), leaves its sweeper ``running`` for good, and a holder's
    watched awaits on a later loop would go unswept. A holder on a second loop running at the
    same time in another thread skips ``ensure`` too: the first loop's sweeps look at the other
    loops' tasks and have a loop with a watched frame suspended and no sweeper start one, and
    so does that sweeper when it stops."""

    __slots__ = ("gauge", "running", "task")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.running = loop is not None
        self.gauge: Any = _NOWHERE
        if loop is not None:
            self.gauge = loop if isinstance(loop, asyncio.BaseEventLoop) else _Gauge(loop)
        self.task: asyncio.Task[None] | None = None
        """The sweeper's task (the loop holds tasks by weak reference only: this keeps it)."""

    def stop(self) -> None:
        """It stopped (or its loop closed under it): a holder makes sure of another."""
        self.running, self.gauge = False, _NOWHERE


STOPPED = Sweeper()
"""A sweeper that never runs: what a holder of a `Sweeper` starts with."""


_EVERY_TASK: Any = getattr(asyncio.tasks, "_all_tasks", None)
if _EVERY_TASK is None:  # CPython 3.12, 3.13 (3.14 has neither: other loops go unwatched)
    _EVERY_TASK = getattr(asyncio.tasks, "_scheduled_tasks", ())


def _other_loops_tasks(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[Any]]:
    """The pending tasks of the process's other loops (`asyncio.all_tasks` gives one loop's;
    a copy of the set another thread may grow meanwhile, retried as that function does)."""
    for _ in range(1000):
        try:
            tasks = list(_EVERY_TASK)
        except RuntimeError:  # changed size while being copied: another thread made a task
            continue
        return [task for task in tasks if task.get_loop() is not loop and not task.done()]
    return []


def _chain(coro: object) -> Iterator[Any]:
    """A task's coroutine and every coroutine or generator it is awaiting, outermost first."""
    for _ in range(1000):  # a cycle cannot happen; a bound costs nothing
        if coro is None:
            return
        yield coro
        kind = type(coro)
        if kind is CoroutineType:
            coro = coro.cr_await  # type: ignore[attr-defined]
        elif kind is GeneratorType:
            coro = coro.gi_yieldfrom  # type: ignore[attr-defined]
        elif kind is AsyncGeneratorType:
            coro = coro.ag_await  # type: ignore[attr-defined]
        elif kind.__name__ in _OPAQUE:
            coro = next((r for r in gc.get_referents(coro) if type(r) in _FOLLOWED), None)
        else:
            return  # a future, a task or a custom awaitable: nothing more to follow


def _frame_of(coro: Any) -> FrameType | None:
    kind = type(coro)
    if kind is CoroutineType:
        frame: FrameType | None = coro.cr_frame
    elif kind is AsyncGeneratorType:
        frame = coro.ag_frame
    elif kind is GeneratorType:
        frame = coro.gi_frame
    else:
        return None
    return frame


class Deadlines:
    """Deadlines of the tasks of a loop; see the module docstring."""

    def __init__(self, resolution: float = 0.25) -> None:
        self.resolution = resolution
        self._due: dict[int, tuple[float, asyncio.Task[object]]] = {}
        self._expired_keys: set[int] = set()
        self._keys = itertools.count()
        self._watched: set[CodeType] = set()
        self.expired: dict[FrameType, tuple[asyncio.Task[Any], Step]] = {}
        """Watched frames whose armed await the sweeper cancelled, not yet answered by
        `timed_out` or `withdraw`; empty nearly always (its truth test is the per-await cost)."""
        self._sweepers: dict[asyncio.AbstractEventLoop, Sweeper] = {}
        self._asked: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        """Other loops asked (`call_soon_threadsafe`) to start a sweeper, not started yet."""
        self.sweeping: asyncio.AbstractEventLoop | None = None
        """The loop whose sweeper started last (the common case: the only one): a caller on it
        may skip `ensure`. A loop closed while its sweeper was pending, without cancelling its
        tasks first (`asyncio.run` and pytest-asyncio do cancel them), leaves it set: it is
        never the running loop again, so a new loop's caller still makes sure of its own (not
        the thread: a new loop in the same thread then went unswept)."""

    # watched frames --------------------------------------------------------------------------

    def watch(self, code: CodeType) -> None:
        """Sweep the frames of `code` (a coroutine function's ``__code__``) by their local
        ``armed``."""
        self._watched.add(code)

    def ensure(self) -> Sweeper:
        """Make sure a sweeper runs on the running loop (call before a watched await); that
        sweeper."""
        loop = _running_loop()
        sweeper = self._sweepers.get(loop)
        return sweeper if sweeper is not None else self._start_sweeper(loop)

    def timed_out(self, frame: FrameType | None) -> bool:
        """On a CancelledError in watched `frame`: whether the sweeper cancelled its armed
        await and that is the task's only cancellation (a timeout). Withdraws it either way."""
        found = self.expired.pop(frame, None) if frame is not None else None
        return found is not None and found[0].uncancel() == 0

    def withdraw(self, frame: FrameType | None) -> None:
        """The armed await of `frame` ended without its CancelledError (the callee swallowed
        it, or raised something else): the sweeper's cancellation, if any, is withdrawn."""
        found = self.expired.pop(frame, None) if frame is not None else None
        if found is not None:
            found[0].uncancel()

    # registered deadlines --------------------------------------------------------------------

    def start(self, seconds: float) -> int:
        """Cancel the current task if it still holds this deadline in `seconds`; the key to
        pass to `finish`."""
        task = asyncio.current_task()
        key = next(self._keys)
        if task is None:
            return key
        self._due[key] = (time.monotonic() + seconds, task)
        loop = task.get_loop()
        if loop is not self.sweeping and loop not in self._sweepers:
            self._start_sweeper(loop)
        return key

    def finish(self, key: int) -> bool:
        """Release the deadline; True if it expired and that is the only cancellation of the
        task (the caller turns the CancelledError into a timeout)."""
        self._due.pop(key, None)
        if key in self._expired_keys:
            self._expired_keys.discard(key)
            task = asyncio.current_task()
            # Another cancellation pending (the caller's own, or an enclosing deadline of the
            # same sweep) wins: the CancelledError must go on up, not become a timeout.
            return task is None or task.uncancel() == 0
        return False

    # the sweeper -----------------------------------------------------------------------------

    def _start_sweeper(self, loop: asyncio.AbstractEventLoop) -> Sweeper:
        for closed in [other for other in self._sweepers if other.is_closed()]:
            # closed with its sweeper pending (not cancelled): its finally never runs
            self._sweepers.pop(closed).stop()
        self.sweeping = loop
        self._asked.discard(loop)
        sweeper = self._sweepers[loop] = Sweeper(loop)
        sweeper.task = loop.create_task(self._sweep(loop, sweeper))
        return sweeper

    def _ensure_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Asked by another loop's sweeper, run on `loop`: a sweeper runs here."""
        if loop not in self._sweepers and not loop.is_closed():
            self._start_sweeper(loop)

    def _ask(self, loop: asyncio.AbstractEventLoop) -> None:
        """Have `loop` (another thread's) start a sweeper, once until it does."""
        if loop in self._sweepers or loop in self._asked or loop.is_closed():
            return
        self._asked.add(loop)  # before: `_ensure_on` may run (and discard it) at once
        try:
            loop.call_soon_threadsafe(self._ensure_on, loop)
        except RuntimeError:  # closed meanwhile: nothing of it will run again
            self._asked.discard(loop)

    async def _sweep(self, loop: asyncio.AbstractEventLoop, sweeper: Sweeper) -> None:
        seen: dict[FrameType, tuple[Step, float]] = {}
        try:
            while True:
                await asyncio.sleep(self.resolution)
                now = time.monotonic()
                for key, (deadline, task) in list(self._due.items()):
                    expired = task.get_loop() is loop and deadline <= now
                    if expired and self._due.pop(key, None) is not None:
                        self._expired_keys.add(key)
                        task.cancel()
                found = False
                if self._watched:
                    seen, found = self._sweep_watched(loop, seen, now)
                if not found and not self.expired and not self._due:
                    return  # nothing under a deadline: `ensure` starts another
        finally:
            sweeper.stop()
            if self._sweepers.get(loop) is sweeper:
                del self._sweepers[loop]
            if self.sweeping is loop:
                self.sweeping = None
            # a holder of this sweeper on another loop (running in another thread) may be
            # suspended in a watched frame now: that loop starts a sweeper of its own
            self._ask_suspended(loop)

    def _sweep_watched(
        self,
        loop: asyncio.AbstractEventLoop,
        seen: dict[FrameType, tuple[Step, float]],
        now: float,
    ) -> tuple[dict[FrameType, tuple[Step, float]], bool]:
        """One look at the loop's tasks: the watched frames armed now, since when, and
        whether any watched frame is suspended at all (armed or not: it may arm again)."""
        armed: dict[FrameType, tuple[Step, float]] = {}
        found: set[FrameType] = set()
        watched, expired = self._watched, self.expired
        self._ask_suspended(loop)
        for task in asyncio.all_tasks(loop):
            for coro in _chain(task.get_coro()):
                frame = _frame_of(coro)
                if frame is None or frame.f_code not in watched:
                    continue
                found.add(frame)
                step = frame.f_locals.get("armed")
                limit = getattr(step, "limit", None)
                if step is None or not limit:
                    continue
                before = seen.get(frame)
                since = before[1] if before is not None and before[0] is step else now
                armed[frame] = (step, since)
                cancelled = expired.get(frame)
                if cancelled is not None and cancelled[1] is not step:
                    # that await swallowed its cancellation and the frame went on: withdrawn
                    # here (the function withdraws it itself only when its run ends)
                    del expired[frame]
                    task.uncancel()
                    cancelled = None
                if cancelled is None and now - since >= limit:
                    expired[frame] = (task, step)
                    task.cancel()
        for frame, (task, _) in list(expired.items()):  # one call: other loops' sweeps write it
            if frame not in found and task.get_loop() is loop:
                del expired[frame]  # its coroutine is gone (closed): nobody left to answer
        return armed, bool(found)

    def _ask_suspended(self, loop: asyncio.AbstractEventLoop) -> None:
        """Have each other loop with a task suspended in a watched frame and no sweeper start
        one (idle loops are left alone: they would start and stop sweepers in turn)."""
        for task in _other_loops_tasks(loop):
            other = task.get_loop()
            if other not in self._sweepers and self._suspended_in_watched(task):
                self._ask(other)

    def _suspended_in_watched(self, task: asyncio.Task[Any]) -> bool:
        """Whether another loop's `task` is suspended in a watched frame (read from this thread:
        a running coroutine shows no ``cr_await``, so only suspended ones are followed)."""
        for coro in _chain(task.get_coro()):
            frame = _frame_of(coro)
            if frame is not None and frame.f_code in self._watched:
                return True
        return False


shared = Deadlines()
"""The deadlines of the event bus and the model registry (one sweeper per loop for both)."""

# `shared`'s methods and its expired map bound once, for the hot paths (the bus's emit, the
# registry's use_model) to import as module globals: a global costs them less per call than an
# attribute of `shared`.
expired = shared.expired
ensure = shared.ensure
withdraw = shared.withdraw
timed_out = shared.timed_out
