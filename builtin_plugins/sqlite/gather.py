"""Many tasks writing at once: a write group keeps gathering while the worker thread is busy,
instead of queueing its writes behind it.

A small write joins its loop turn's group, committed on the loop's thread (worker.py,
`SqliteCore._submit`), unless the worker is busy then (a search or read sent to it, a group
it commits): the group is then queued for the worker. Without more, that state feeds itself
when many tasks write (100 rooms at once): while the worker commits, the next group finds it
busy and queues too; each such commit then carries the writes of one or two loop callbacks
(~2 writes a commit against ~50 in groups committed on the loop), the worker's statements
wait for the GIL the loop holds while it runs Python, and the loop's searches, finding the
index lock held by the worker's commit, go to the worker as well. One search sent to the
worker as 100 rooms start (a new speaker's first) put whole runs of `bench/pipeline.py` in
that state, others not: the 100-room figure moved between runs of the same code
(bench/concurrency.py shows it per round: ~200 commits for 200 messages, or ~8).

So while the worker is busy and other tasks are ready to run, the group's first writer yields
again (the other tasks' writes join its group meanwhile), for at most `GATHER_FOR` seconds;
then it commits the group here if the worker is free by then, else queues it as before. With
nothing else ready it does not wait (one room: a yield there would spin the loop while the
worker works). Order is kept: the group commits here only once nothing is queued for the
worker (`_commit_here`), and each caller still returns only once its transaction committed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .worker import SqliteCore

__all__ = ["GATHER_FOR", "gather_while_worker_busy", "here_or_after_worker"]

T = TypeVar("T")

GATHER_FOR = 0.002
"""Seconds a write group may keep gathering while the worker is busy (a worker's commit of a
few writes takes well under a millisecond; a search a few)."""


async def gather_while_worker_busy(store: SqliteCore, loop: asyncio.AbstractEventLoop) -> None:
    """Yield (a write group's first writer) while `store`'s worker is busy and other tasks are
    ready on `loop`, for at most `GATHER_FOR` seconds (see the module doc)."""
    if not store.worker_busy() or not _crowded(loop):
        return
    await _wait_for_worker(store, loop)


async def here_or_after_worker(store: SqliteCore, answer: Callable[[], T | None]) -> T | None:
    """`answer()` (a search or read answered on the caller's thread, None when it cannot be
    now); when it could not because the worker held the index lock (a commit or search of its
    own) and other tasks are ready, once more after waiting for the worker as a write group
    does (`gather_while_worker_busy`): such a call sent to the worker kept it busy, which sent
    the next ones there too (see the module doc). None: send it to the worker."""
    found = answer()
    if found is not None or not store.indexes_busy():
        return found
    loop = asyncio.get_running_loop()
    if not _crowded(loop):
        return None
    await _wait_for_worker(store, loop)
    return answer()


def _crowded(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether other callbacks are ready on `loop` now. A loop that does not show its queue
    (uvloop) is never taken to be crowded: waiting there would spin it with nothing to run."""
    ready = getattr(loop, "_ready", None)
    return ready is not None and bool(ready)


async def _wait_for_worker(store: SqliteCore, loop: asyncio.AbstractEventLoop) -> None:
    until = time.perf_counter() + GATHER_FOR
    while True:
        await asyncio.sleep(0)
        if not store.worker_busy() or not _crowded(loop) or time.perf_counter() >= until:
            store.turned(loop)
            return
