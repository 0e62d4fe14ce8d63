"""Provider cache behaviour: TTL, scopes, single flight, errors, invalidation, bounds, stats."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.agent import CachePolicy, CacheScope
from contracts.cache import CacheContext
from contracts.config import CacheSettings
from contracts.events import MEMORY_CREATED, MEMORY_DELETED, MemoryPayload
from host.cache import ProviderCache, _scoped_key, scoped_context
from host.events import EventBus
from host.metrics import InMemoryMetrics
from host.metrics.sampler import Sampler, cache_source


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counter:
    """A provider body that counts its calls and returns a fresh value each time."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        return f"value-{self.calls}"


ROOM_A = CacheContext(agent_id="agent", room_id="a", entity_id="alice", message_id="m1")
ROOM_B = CacheContext(agent_id="agent", room_id="b", entity_id="bob", message_id="m2")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(clock: Clock) -> ProviderCache:
    return ProviderCache(CacheSettings(max_entries=100), clock=clock)


async def test_hit_skips_the_provider_and_rooms_are_separate(cache: ProviderCache) -> None:
    cache.register("time", CachePolicy(ttl=60))
    body = Counter()
    assert await cache.get_or_compute("time", ROOM_A, body) == "value-1"
    assert await cache.get_or_compute("time", ROOM_A, body) == "value-1"
    assert await cache.get_or_compute("time", ROOM_B, body) == "value-2"
    assert body.calls == 2
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries) == (1, 2, 2)


async def test_ttl_expiry_recomputes_and_is_purged(cache: ProviderCache, clock: Clock) -> None:
    cache.register("time", CachePolicy(ttl=10))
    body = Counter()
    await cache.get_or_compute("time", ROOM_A, body)
    clock.now += 9.9
    assert await cache.get_or_compute("time", ROOM_A, body) == "value-1"
    clock.now += 0.2
    assert await cache.get_or_compute("time", ROOM_A, body) == "value-2"
    clock.now += 11
    assert cache.purge_expired() == 1
    assert cache.stats().entries == 0
    assert cache.stats().expirations >= 1


async def test_no_ttl_or_unknown_provider_is_never_cached(cache: ProviderCache) -> None:
    cache.register("live", CachePolicy(ttl=None))
    body = Counter()
    await cache.get_or_compute("live", ROOM_A, body)
    await cache.get_or_compute("live", ROOM_A, body)
    await cache.get_or_compute("unregistered", ROOM_A, body)
    assert body.calls == 3
    assert cache.stats().entries == 0


@pytest.mark.parametrize(
    ("scope", "shared_with_b", "calls_with_other_agent"),
    [
        ("global", True, 1),
        ("agent", True, 2),
        ("room", False, 3),
        ("entity", False, 3),
        ("message", False, 3),
    ],
)
async def test_key_scope(
    cache: ProviderCache, scope: str, shared_with_b: bool, calls_with_other_agent: int
) -> None:
    cache.register("p", CachePolicy(ttl=60, scope=scope))  # type: ignore[arg-type]
    body = Counter()
    await cache.get_or_compute("p", ROOM_A, body)
    await cache.get_or_compute("p", ROOM_B, body)
    assert body.calls == (1 if shared_with_b else 2)
    other_agent = CacheContext(agent_id="other", room_id="a", entity_id="alice", message_id="m1")
    await cache.get_or_compute("p", other_agent, body)
    assert body.calls == calls_with_other_agent


async def test_single_flight_computes_once_for_concurrent_callers(cache: ProviderCache) -> None:
    cache.register("slow", CachePolicy(ttl=60))
    calls = 0
    gate = asyncio.Event()

    async def body() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "done"

    waiters = [asyncio.create_task(cache.get_or_compute("slow", ROOM_A, body)) for _ in range(50)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiters) == ["done"] * 50
    assert calls == 1


async def test_errors_reach_every_waiter_and_are_not_cached(cache: ProviderCache) -> None:
    cache.register("flaky", CachePolicy(ttl=60))
    calls = 0

    async def failing() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise RuntimeError("provider down")

    results = await asyncio.gather(
        *(cache.get_or_compute("flaky", ROOM_A, failing) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    assert calls == 1
    assert await cache.get_or_compute("flaky", ROOM_A, Counter()) == "value-1"
    assert cache.stats().errors == 1


async def test_cancelled_caller_does_not_fail_the_others(cache: ProviderCache) -> None:
    cache.register("slow", CachePolicy(ttl=60))
    gate = asyncio.Event()

    async def body() -> str:
        await gate.wait()
        return "ok"

    first = asyncio.create_task(cache.get_or_compute("slow", ROOM_A, body))
    second = asyncio.create_task(cache.get_or_compute("slow", ROOM_A, body))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert await second == "ok"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert cache.stats().entries == 1


async def test_cancelled_waiter_does_not_cancel_the_computation(cache: ProviderCache) -> None:
    cache.register("slow", CachePolicy(ttl=60))
    gate = asyncio.Event()
    calls = 0

    async def body() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "ok"

    first = asyncio.create_task(cache.get_or_compute("slow", ROOM_A, body))
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(cache.get_or_compute("slow", ROOM_A, body)) for _ in range(2)]
    await asyncio.sleep(0)
    waiters[0].cancel()
    await asyncio.sleep(0)
    gate.set()
    assert await first == "ok"
    assert await waiters[1] == "ok"
    assert waiters[0].cancelled()
    assert calls == 1
    assert cache.stats().entries == 1


async def test_cancelled_computation_with_waiters_is_computed_again_once(
    cache: ProviderCache,
) -> None:
    """The caller computing a value is cancelled (its timeout): one waiter computes it again,
    the other waiters share that second computation, and it is stored."""
    cache.register("slow", CachePolicy(ttl=60))
    gate = asyncio.Event()
    calls = 0

    async def body() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return f"ok-{calls}"

    first = asyncio.create_task(cache.get_or_compute("slow", ROOM_A, body))
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(cache.get_or_compute("slow", ROOM_A, body)) for _ in range(3)]
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiters) == ["ok-2"] * 3
    assert first.cancelled()
    assert calls == 2
    assert await cache.get_or_compute("slow", ROOM_A, body) == "ok-2"
    assert cache.stats().entries == 1


async def test_cancelled_computation_alone_stores_nothing(cache: ProviderCache) -> None:
    cache.register("slow", CachePolicy(ttl=60))
    body = Counter()

    async def stuck() -> str:
        await asyncio.Event().wait()
        return "never"

    task = asyncio.create_task(cache.get_or_compute("slow", ROOM_A, stuck))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cache.stats().entries == 0
    assert await cache.get_or_compute("slow", ROOM_A, body) == "value-1"


async def test_event_invalidates_only_the_events_room(cache: ProviderCache) -> None:
    cache.register("recent", CachePolicy(ttl=60, invalidate_on=(MEMORY_CREATED,)))
    cache.register("untouched", CachePolicy(ttl=60))
    body, other = Counter(), Counter()
    for ctx in (ROOM_A, ROOM_B):
        await cache.get_or_compute("recent", ctx, body)
        await cache.get_or_compute("untouched", ctx, other)
    assert MEMORY_CREATED.name in cache.watched_events
    dropped = cache.handle_event(
        MEMORY_CREATED.name, SimpleNamespace(agent_id="agent", room_id="a", entity_id="alice")
    )
    assert dropped == 1
    assert await cache.get_or_compute("recent", ROOM_A, body) == "value-3"
    assert await cache.get_or_compute("recent", ROOM_B, body) == "value-2"
    assert other.calls == 2
    assert cache.handle_event(MEMORY_DELETED.name, SimpleNamespace(room_id="a")) == 0


async def test_event_without_room_invalidates_every_room(cache: ProviderCache) -> None:
    cache.register("recent", CachePolicy(ttl=60, invalidate_on=(MEMORY_CREATED,)))
    for ctx in (ROOM_A, ROOM_B):
        await cache.get_or_compute("recent", ctx, Counter())
    assert cache.handle_event(MEMORY_CREATED.name, SimpleNamespace(agent_id="agent")) == 2


async def test_dependencies_invalidate_transitively_and_survive_cycles(
    cache: ProviderCache,
) -> None:
    cache.register("facts", CachePolicy(ttl=60, dependencies=("summary",)))
    cache.register("summary", CachePolicy(ttl=60, dependencies=("recent",)))
    cache.register("recent", CachePolicy(ttl=60, dependencies=("facts",)))  # a cycle
    cache.register("bystander", CachePolicy(ttl=60))
    for name in ("facts", "summary", "recent", "bystander"):
        await cache.get_or_compute(name, ROOM_A, Counter())
        await cache.get_or_compute(name, ROOM_B, Counter())
    assert cache.invalidate("recent", CacheContext(agent_id="agent", room_id="a")) == 3
    assert cache.stats().entries == 5
    assert cache.invalidate("recent") == 3
    assert cache.stats().entries == 2
    assert cache.stats().invalidations == 6


async def test_invalidation_during_computation_is_not_stored(cache: ProviderCache) -> None:
    cache.register("slow", CachePolicy(ttl=60))
    gate = asyncio.Event()

    async def body() -> str:
        await gate.wait()
        return "before-event"

    waiter = asyncio.create_task(cache.get_or_compute("slow", ROOM_A, body))
    await asyncio.sleep(0)
    cache.invalidate("slow", ROOM_A)
    late = Counter()
    # A caller arriving after the invalidation must not join the pre-event computation.
    assert await cache.get_or_compute("slow", ROOM_A, late) == "value-1"
    gate.set()
    assert await waiter == "before-event"
    assert await cache.get_or_compute("slow", ROOM_A, Counter()) == "value-1"
    assert late.calls == 1


async def test_lru_eviction_by_entries(clock: Clock) -> None:
    cache = ProviderCache(CacheSettings(max_entries=3), clock=clock)
    cache.register("p", CachePolicy(ttl=60))
    rooms = [CacheContext(agent_id="x", room_id=str(i)) for i in range(4)]
    for ctx in rooms[:3]:
        await cache.get_or_compute("p", ctx, Counter())
    await cache.get_or_compute("p", rooms[0], Counter())  # room 0 becomes most recent
    await cache.get_or_compute("p", rooms[3], Counter())  # evicts room 1
    stats = cache.stats()
    assert (stats.entries, stats.evictions) == (3, 1)
    body = Counter()
    await cache.get_or_compute("p", rooms[0], body)
    await cache.get_or_compute("p", rooms[1], body)
    assert body.calls == 1


async def test_bounded_by_bytes(clock: Clock) -> None:
    cache = ProviderCache(
        CacheSettings(max_entries=None, max_bytes=2000), clock=clock, sizeof=lambda v: 600
    )
    cache.register("p", CachePolicy(ttl=60))
    for i in range(5):
        await cache.get_or_compute("p", CacheContext(room_id=str(i)), Counter())
    stats = cache.stats()
    assert stats.entries == 3
    assert stats.size_bytes == 1800
    assert stats.evictions == 2


async def test_too_large_value_is_returned_not_stored(clock: Clock) -> None:
    cache = ProviderCache(
        CacheSettings(max_entries=10, max_bytes=100), clock=clock, sizeof=lambda v: 500
    )
    cache.register("p", CachePolicy(ttl=60))
    assert await cache.get_or_compute("p", ROOM_A, Counter()) == "value-1"
    assert cache.stats().entries == 0


async def test_unregister_owner_drops_that_plugins_entries(cache: ProviderCache) -> None:
    cache.register("mine", CachePolicy(ttl=60), owner="plugin-a")
    cache.register("theirs", CachePolicy(ttl=60), owner="plugin-b")
    await cache.get_or_compute("mine", ROOM_A, Counter())
    await cache.get_or_compute("theirs", ROOM_A, Counter())
    cache.unregister_owner("plugin-a")
    assert cache.policy("mine") is None
    assert cache.stats().entries == 1
    body = Counter()
    await cache.get_or_compute("mine", ROOM_A, body)
    await cache.get_or_compute("mine", ROOM_A, body)
    assert body.calls == 2  # no longer registered: not cached


async def test_saved_time_counts_hits() -> None:
    cache = ProviderCache(CacheSettings(max_entries=10))
    cache.register("p", CachePolicy(ttl=60))

    async def slow() -> str:
        await asyncio.sleep(0.02)
        return "x"

    await cache.get_or_compute("p", ROOM_A, slow)
    for _ in range(3):
        await cache.get_or_compute("p", ROOM_A, slow)
    stats = cache.stats()
    assert stats.hits == 3
    assert stats.saved_seconds >= 0.05
    assert stats.hit_ratio == pytest.approx(0.75)


def test_bounds_are_validated() -> None:
    with pytest.raises(ValueError, match="max_entries and/or max_bytes"):
        ProviderCache(CacheSettings(max_entries=None, max_bytes=None))
    with pytest.raises(ValueError, match="greater than or equal to 1"):  # the section's check
        ProviderCache(CacheSettings(max_entries=0))


# Property: with invalidate_on covering every change of the underlying data, a cached compose
# returns exactly what an uncached compose returns, whatever the interleaving of reads, events,
# explicit invalidations, clock moves and evictions.
ROOMS = ("a", "b", "c")
_op = st.one_of(
    st.tuples(
        st.just("read"), st.sampled_from(("room", "global", "derived")), st.sampled_from(ROOMS)
    ),
    st.tuples(st.just("write"), st.just(""), st.sampled_from(ROOMS)),
    st.tuples(st.just("tick"), st.just(""), st.sampled_from(("1", "30", "100"))),
    st.tuples(
        st.just("invalidate"),
        st.sampled_from(("room", "global", "derived")),
        st.sampled_from(ROOMS),
    ),
)


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(_op, max_size=60), max_entries=st.integers(min_value=1, max_value=8))
def test_cached_compose_never_differs_from_uncached(
    ops: list[tuple[str, str, str]], max_entries: int
) -> None:
    clock = Clock()
    cache = ProviderCache(CacheSettings(max_entries=max_entries), clock=clock)
    on_write = (MEMORY_CREATED,)
    cache.register("room", CachePolicy(ttl=50, invalidate_on=on_write, scope="room"))
    cache.register("global", CachePolicy(ttl=50, invalidate_on=on_write, scope="global"))
    cache.register("derived", CachePolicy(ttl=50, dependencies=("room",), scope="agent"))
    data = dict.fromkeys(ROOMS, 0)

    def uncached(provider: str, room: str) -> str:
        if provider == "room":
            return f"{room}={data[room]}"
        return ",".join(f"{r}={data[r]}" for r in ROOMS)

    async def run() -> None:
        for op, provider, arg in ops:
            if op == "read":
                ctx = CacheContext(agent_id="agent", room_id=arg)

                async def compute(provider: str = provider, room: str = arg) -> str:
                    return uncached(provider, room)

                assert await cache.get_or_compute(provider, ctx, compute) == uncached(provider, arg)
            elif op == "write":
                data[arg] += 1
                cache.handle_event(
                    MEMORY_CREATED.name, SimpleNamespace(agent_id="agent", room_id=arg)
                )
            elif op == "tick":
                clock.now += float(arg)
            else:
                cache.invalidate(provider, CacheContext(agent_id="agent", room_id=arg))

    asyncio.run(run())


@pytest.mark.parametrize(
    ("policy", "complaint"),
    [
        (CachePolicy(ttl=-1), "cache ttl must be seconds >= 0 or None"),
        (CachePolicy(ttl=float("nan")), "got nan"),
        (CachePolicy(ttl=60, invalidate_on=("memory:created",)), "takes event tokens"),  # type: ignore[arg-type]
        (CachePolicy(ttl=60, dependencies=(MEMORY_CREATED,)), "are provider names"),  # type: ignore[arg-type]
    ],
)
def test_a_policy_the_cache_cannot_follow_is_refused_naming_the_provider(
    cache: ProviderCache, policy: CachePolicy, complaint: str
) -> None:
    with pytest.raises(ValueError, match=rf"provider weather\.now: .*{complaint}"):
        cache.register("weather.now", policy)
    assert cache.policy("weather.now") is None


@given(
    scope=st.sampled_from(["global", "agent", "room", "entity", "message"]),
    fields=st.tuples(*[st.none() | st.sampled_from(["x", "y"]) for _ in range(4)]),
)
def test_lookup_keys_hold_exactly_the_fields_of_the_scope(
    scope: CacheScope, fields: tuple[str | None, ...]
) -> None:
    context = CacheContext(*fields)
    scoped = scoped_context(scope, context)
    assert _scoped_key("p", scope, context) == (
        "p", scoped.agent_id, scoped.room_id, scoped.entity_id, scoped.message_id
    )  # fmt: skip
    kept = {f: getattr(context, f) for f in _SCOPE_FIELDS[scope]}
    assert scoped == CacheContext(**kept)


_SCOPE_FIELDS = {
    "global": (),
    "agent": ("agent_id",),
    "room": ("agent_id", "room_id"),
    "entity": ("agent_id", "entity_id"),
    "message": ("agent_id", "message_id"),
}
"""The fields an entry of each `CacheScope` is keyed on, spelled out independently."""


# Property with concurrency: reads whose provider call is held open while writes, invalidations
# and other reads happen. A read may return data as of any moment between its start and its
# end, never older than its start: joining a computation that began before an invalidating
# event, or storing its result, would break this.
_concurrent_op = st.one_of(
    st.tuples(st.just("read"), st.sampled_from(("room", "global")), st.sampled_from(ROOMS)),
    st.tuples(st.just("write"), st.just(""), st.sampled_from(ROOMS)),
    st.tuples(st.just("release"), st.just(""), st.integers(0, 7).map(str)),
    st.tuples(st.just("invalidate"), st.sampled_from(("room", "global")), st.sampled_from(ROOMS)),
)


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(_concurrent_op, max_size=40))
def test_concurrent_reads_never_see_data_older_than_their_start(
    ops: list[tuple[str, str, str]],
) -> None:
    cache = ProviderCache(CacheSettings(max_entries=50), clock=Clock())
    on_write = (MEMORY_CREATED,)
    cache.register("room", CachePolicy(ttl=50, invalidate_on=on_write, scope="room"))
    cache.register("global", CachePolicy(ttl=50, invalidate_on=on_write, scope="global"))
    data = dict.fromkeys(ROOMS, 0)
    held: list[asyncio.Event] = []

    async def compute(provider: str, room: str) -> dict[str, int]:
        seen = {room: data[room]} if provider == "room" else dict(data)  # read, then wait
        gate = asyncio.Event()
        held.append(gate)
        await gate.wait()
        return seen

    async def read(provider: str, room: str) -> None:
        at_start = dict(data)
        ctx = CacheContext(agent_id="agent", room_id=room)
        got = await cache.get_or_compute(provider, ctx, lambda: compute(provider, room))
        assert set(got) == ({room} if provider == "room" else set(ROOMS))
        assert all(at_start[r] <= version <= data[r] for r, version in got.items()), (
            at_start, got, data
        )  # fmt: skip

    async def settle() -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    async def run() -> None:
        reads: list[asyncio.Task[None]] = []
        for op, provider, arg in ops:
            if op == "read":
                reads.append(asyncio.create_task(read(provider, arg)))
            elif op == "write":
                data[arg] += 1
                cache.handle_event(
                    MEMORY_CREATED.name, SimpleNamespace(agent_id="agent", room_id=arg)
                )
            elif op == "release":
                waiting = [gate for gate in held if not gate.is_set()]
                if waiting:
                    waiting[int(arg) % len(waiting)].set()
            else:
                cache.invalidate(provider, CacheContext(agent_id="agent", room_id=arg))
            await settle()
        while not all(task.done() for task in reads):
            for gate in held:
                gate.set()
            await settle()
        for task in reads:
            task.result()  # re-raise a failed assertion of a read

    asyncio.run(run())


async def test_bounded_by_entries_and_bytes_at_once(clock: Clock) -> None:
    """Both bounds set: whichever is reached first evicts, least recently used first."""
    cache = ProviderCache(
        CacheSettings(max_entries=2, max_bytes=1000), clock=clock, sizeof=lambda v: 300
    )
    cache.register("p", CachePolicy(ttl=60))
    rooms = [CacheContext(room_id=str(i)) for i in range(3)]
    for ctx in rooms:
        await cache.get_or_compute("p", ctx, Counter())
    stats = cache.stats()
    assert (stats.entries, stats.size_bytes, stats.evictions) == (2, 600, 1)
    body = Counter()
    await cache.get_or_compute("p", rooms[0], body)  # the oldest one went
    assert body.calls == 1
    large = ProviderCache(
        CacheSettings(max_entries=10, max_bytes=1000), clock=clock, sizeof=lambda v: 400
    )
    large.register("p", CachePolicy(ttl=60))
    for ctx in rooms:
        await large.get_or_compute("p", ctx, Counter())
    assert (large.stats().entries, large.stats().evictions) == (2, 1)  # bytes bound first


async def test_bind_subscribes_each_watched_event_once_ahead_of_every_handler(
    cache: ProviderCache,
) -> None:
    bus = EventBus()
    cache.register("recent", CachePolicy(ttl=60, invalidate_on=(MEMORY_CREATED,)))
    cache.bind(bus)  # after a registration...
    cache.register("gone", CachePolicy(ttl=60, invalidate_on=(MEMORY_CREATED, MEMORY_DELETED)))
    cache.register("again", CachePolicy(ttl=60, invalidate_on=(MEMORY_CREATED,)))  # ...and before
    agent, room = uuid4(), uuid4()
    context = CacheContext(agent_id=str(agent), room_id=str(room))
    body = Counter()
    await cache.get_or_compute("recent", context, body)
    order: list[str] = []

    async def eager(payload: MemoryPayload) -> None:
        order.append(await cache.get_or_compute("recent", context, body))

    bus.on(MEMORY_CREATED, eager, priority=10**9)
    assert [s.owner for s in bus.subscriptions(MEMORY_CREATED)] == ["host", None]
    assert [s.owner for s in bus.subscriptions(MEMORY_DELETED)] == ["host"]

    def created(room_id: UUID) -> MemoryPayload:
        return MemoryPayload(
            agent_id=agent, room_id=room_id, entity_id=uuid4(), memory_id=uuid4(), table_name="m"
        )

    await bus.emit(MEMORY_CREATED, created(uuid4()))
    assert order == ["value-1"]  # another room: still cached
    await bus.emit(MEMORY_CREATED, created(room))
    assert order == ["value-1", "value-2"]  # dropped before the eager handler ran


async def test_metrics_sample_every_counter_including_expirations_and_time_saved(
    cache: ProviderCache, clock: Clock
) -> None:
    cache.register("p", CachePolicy(ttl=10))
    metrics = InMemoryMetrics()
    sampler = Sampler(metrics)
    counters, gauges = cache_source(cache)
    sampler.add("host", counters, kind="counter")
    sampler.add("host", gauges)

    async def slow() -> str:
        await asyncio.sleep(0.02)
        return "x"

    await cache.get_or_compute("p", ROOM_A, slow)
    await cache.get_or_compute("p", ROOM_A, slow)
    clock.now += 11
    sampler.sample()
    assert metrics.total("agenthost.cache.hits") == 1
    assert metrics.total("agenthost.cache.expirations") == 1
    assert metrics.total("agenthost.cache.saved") >= 0.02
    entries = metrics.get("agenthost.cache.entries")
    assert entries is not None and entries.value == 0
