"""`Deadlines`: coarse timeouts for many short awaits, one sweeper task instead of a timer each.

``asyncio.timeout()`` schedules and cancels a timer per call, about 4 µs on this project's
machines: more than a model call through the registry or an event handler costs otherwise.
Timeouts here are long (seconds) and only there to stop a hung call, so a deadline checked
every `resolution` seconds is precise enough: a call runs at most `resolution` past its limit.
Registering a deadline is a dict insert; the sweeper cancels the task that owns an expired one,
and `expired` tells the caller its CancelledError was a timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import time

__all__ = ["Deadlines"]


class Deadlines:
    """Deadlines for the current task; see the module docstring."""

    def __init__(self, resolution: float = 0.25) -> None:
        self.resolution = resolution
        self._due: dict[int, tuple[float, asyncio.Task[object]]] = {}
        self._expired: set[int] = set()
        self._keys = itertools.count()
        self._sweeper: asyncio.Task[None] | None = None

    def start(self, seconds: float) -> int:
        """Cancel the current task if it still holds this deadline in `seconds`; the key to
        pass to `finish`."""
        task = asyncio.current_task()
        key = next(self._keys)
        if task is None:
            return key
        self._due[key] = (time.monotonic() + seconds, task)
        sweeper = self._sweeper
        if sweeper is None or sweeper.done() or sweeper.get_loop() is not task.get_loop():
            self._sweeper = task.get_loop().create_task(self._sweep())
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

    async def _sweep(self) -> None:
        while self._due:
            await asyncio.sleep(self.resolution)
            now = time.monotonic()
            for key, (deadline, task) in list(self._due.items()):
                if deadline <= now and self._due.pop(key, None) is not None:
                    self._expired.add(key)
                    task.cancel()
