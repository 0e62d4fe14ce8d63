"""The garbage collector and a running host: what start-up made is frozen out of collections.

A started host keeps what its start-up made (the imported modules, pydantic's schemas, the
plugins, the config: a few hundred thousand objects) until it stops. CPython's cyclic collector
walks every tracked object at each full collection, and a host that reads pages of memories
makes objects fast enough to trigger one every few pages: measured on `bench/storage.py
--only read`, a third of a page's time went to walking start-up's objects again and again.
`freeze` moves them to the collector's permanent generation (`gc.freeze`, the CPython
documentation's own advice for long-lived servers' start-up state), which full collections
skip; reference counting still frees them as usual. What start-up made and later drops inside a
reference cycle waits for `thaw` (the host's stop) instead of the next full collection.

Agents started with the host and stopped while it runs are part of start-up's objects: what of
them sits in reference cycles is freed at the host's stop, not before.

While a host runs, the youngest generation is also collected less often (`YOUNG_THRESHOLD`
net allocations instead of CPython's 700): a message's turn keeps its objects alive for the
whole turn, and with 100 rooms at once hundreds of turns are alive together, so every one of
them was promoted through both young generations into the old one, which was then walked in
full about every 200 messages (20-60 ms each: the largest latency tails of one room and ~8% of
the CPU of 100 rooms, bench/concurrency.py). Collected less often, most of a turn's objects
are freed by reference counting before a collection sees them. Each young collection still
walks every turn in flight (100 rooms: 15,000-50,000 live objects, 3-5 ms, and none of them
garbage), so its cost a message falls with the threshold: at 10,000 one ran about every 80
messages of 100 rooms (GC 87 us a message); at 50,000 a third as often (36 us; paired rounds:
the 100 rooms' CPU a message 3-11% lower, one room's within its noise). The cyclic garbage
left for later is bounded by the threshold. The threshold in place before (CPython's, or an
app's own) comes back at `thaw`, unless the app set another meanwhile; a larger one already set
is kept.

Not in dev mode: hot reload drops a plugin's modules (cycles of functions, classes and their
module) on every edit, and those must be collected. Nor with ``gc_freeze: false`` (or
``AGENTHOST_GC_FREEZE=false``): the freeze is process-wide, so an app that embeds the host and
makes and drops reference cycles of its own while it runs may not want them kept.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "freeze", "frozen", "thaw"]

YOUNG_THRESHOLD = 50_000
"""Net allocations of tracked objects between two collections of the youngest generation
while a host runs (CPython: 700)."""

_holders = 0
_young: tuple[int, int] | None = None
"""(the youngest generation's threshold before the first running host's `freeze`, the one it
set): `thaw` restores the first unless something changed the threshold meanwhile."""


def freeze() -> None:
    """Freeze every object tracked now (a host's start-up is done); pair with `thaw`."""
    global _holders, _young
    _holders += 1
    gc.freeze()
    if _young is None:
        young, middle, old = gc.get_threshold()
        _young = (young, max(young, YOUNG_THRESHOLD))
        gc.set_threshold(_young[1], middle, old)


def thaw() -> None:
    """A host that called `freeze` stopped: once none is left running, frozen objects go back
    to the collector's oldest generation (whatever start-up made and dropped is collected).
    This also unfreezes what something else froze (CPython 3.12 freezes a few hundred objects
    of its own at start-up, so a count taken before cannot tell an embedding app's apart)."""
    global _holders, _young
    _holders = max(0, _holders - 1)
    if not _holders:
        gc.unfreeze()
        if _young is not None:
            before, ours = _young
            young, middle, old = gc.get_threshold()
            if young == ours:  # else an app set its own meanwhile: keep it
                gc.set_threshold(before, middle, old)
            _young = None


def frozen() -> int:
    """How many objects are frozen (`gc.get_freeze_count`)."""
    return gc.get_freeze_count()
