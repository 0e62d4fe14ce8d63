"""The provider cache: TTL, dependencies, event-driven invalidation, single flight, LRU bounds.

State composition asks `get_or_compute(provider, context, compute)` for each provider. A value is
reused while its TTL lasts and nothing invalidated it: an event listed in the provider's
`invalidate_on` (scoped by the event's agent/room/entity; `bind` subscribes the cache ahead of
every other handler of the event), the invalidation of a provider it
depends on (transitively), an explicit `invalidate`, or its plugin unloading. Provider errors are
never cached. Entries live in a cachetools `TLRUCache` (per-entry expiry + LRU eviction), bounded
by entries and/or estimated bytes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from cachetools import TLRUCache
from loguru import logger
from pydantic import BaseModel

from contracts.agent import CachePolicy, CacheScope
from contracts.cache import CacheContext, CacheStats
from contracts.config import CacheSettings
from contracts.events import Event, EventBusProtocol, EventPayload, event_named

__all__ = [
    "INVALIDATION_PRIORITY",
    "ProviderCache",
    "context_from_payload",
    "estimate_size",
    "scoped_context",
]

T = TypeVar("T")
_Key = tuple[str, str | None, str | None, str | None, str | None]
INVALIDATION_PRIORITY = 2**62
"""Priority of the cache's event subscriptions (see `ProviderCache.bind`): above any handler's."""
_ENTRY_OVERHEAD = 256
"""Bytes charged per entry on top of its value, for the key, the entry record and the LRU links."""


def scoped_context(scope: CacheScope, context: CacheContext) -> CacheContext:
    """Keep only the fields an entry of this scope is keyed on."""
    _, agent_id, room_id, entity_id, message_id = _scoped_key("", scope, context)
    return CacheContext(agent_id, room_id, entity_id, message_id)


def _scoped_key(provider: str, scope: CacheScope, context: CacheContext) -> _Key:
    """The entry key: the provider and the context fields of its scope (a tuple, not a
    `CacheContext`, as this runs on every lookup)."""
    if scope == "room":
        return (provider, context.agent_id, context.room_id, None, None)
    if scope == "global":
        return (provider, None, None, None, None)
    if scope == "agent":
        return (provider, context.agent_id, None, None, None)
    if scope == "entity":
        return (provider, context.agent_id, None, context.entity_id, None)
    return (provider, context.agent_id, None, None, context.message_id)


def context_from_payload(payload: object) -> CacheContext:
    """The agent/room/entity an event payload is about (fields it lacks stay unknown)."""

    def field(name: str) -> str | None:
        value = getattr(payload, name, None)
        return None if value is None else str(value)

    return CacheContext(
        agent_id=field("agent_id"), room_id=field("room_id"), entity_id=field("entity_id")
    )


def estimate_size(value: object) -> int:
    """Approximate bytes a cached value holds (its JSON or repr length plus a fixed overhead)."""
    if isinstance(value, BaseModel):
        return _ENTRY_OVERHEAD + len(value.model_dump_json())
    if isinstance(value, str | bytes):
        return _ENTRY_OVERHEAD + len(value)
    return _ENTRY_OVERHEAD + len(repr(value))


@dataclass(slots=True)
class _Entry:
    value: Any
    context: CacheContext
    ttl: float
    cost: float
    """Seconds the computation took: what each hit saves."""
    size: int


_ABANDONED: Any = object()
"""A flight's outcome when its computing caller was cancelled: a waiter computes again."""


@dataclass(slots=True)
class _Flight:
    """One computation in progress that concurrent callers share."""

    provider: str
    context: CacheContext
    done: asyncio.Future[Any] | None = None
    """The outcome the waiters await, made when the first of them arrives."""
    stale: bool = False
    """An invalidation arrived while computing: hand the value to the waiters, don't store it."""

    async def wait(self) -> Any:
        """The computation's value (`_ABANDONED` if its caller was cancelled), or its error."""
        if self.done is None:
            self.done = asyncio.get_running_loop().create_future()
            self.done.add_done_callback(_retrieve_exception)
        # shielded: a waiter's cancellation must not cancel the outcome the others await
        return await asyncio.shield(self.done)

    def finish(self, value: Any) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(value)

    def fail(self, error: BaseException) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(error)


@dataclass(slots=True)
class _Registration:
    policy: CachePolicy
    owner: str | None


def _time_to_use(_key: _Key, entry: _Entry, now: float) -> float:
    return now + entry.ttl


class _Store(TLRUCache[_Key, _Entry]):
    """cachetools' TLRU cache that reports every entry it drops by itself (LRU or expiry)."""

    def __init__(
        self,
        maxsize: float,
        timer: Callable[[], float],
        getsizeof: Callable[[_Entry], float] | None,
        on_drop: Callable[[_Key, str], None],
    ) -> None:
        super().__init__(maxsize=maxsize, ttu=_time_to_use, timer=timer, getsizeof=getsizeof)
        self._on_drop = on_drop

    def popitem(self) -> tuple[_Key, _Entry]:
        key, entry = super().popitem()
        self._on_drop(key, "evicted")
        return key, entry

    def expire(self, time: float | None = None) -> list[tuple[_Key, _Entry]]:
        expired = list(super().expire(time))
        for key, _entry in expired:
            self._on_drop(key, "expired")
        return expired


class ProviderCache:
    """In-process provider cache. One per host; agents share it, keys carry the agent id."""

    def __init__(
        self,
        settings: CacheSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sizeof: Callable[[object], int] = estimate_size,
    ) -> None:
        settings = settings if settings is not None else CacheSettings()
        max_entries, max_bytes = settings.max_entries, settings.max_bytes
        if max_entries is None and max_bytes is None:
            raise ValueError(
                "the provider cache needs max_entries and/or max_bytes (config section cache)"
            )
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._sizeof = sizeof
        self._clock = clock
        bound = max_bytes if max_bytes is not None else max_entries
        assert bound is not None
        self._store = _Store(
            maxsize=float(bound),
            timer=clock,
            getsizeof=(lambda entry: entry.size) if max_bytes is not None else None,
            on_drop=self._dropped,
        )
        self._keys: defaultdict[str, set[_Key]] = defaultdict(set)
        self._registrations: dict[str, _Registration] = {}
        self._dependents: defaultdict[str, set[str]] = defaultdict(set)
        self._by_event: defaultdict[str, set[str]] = defaultdict(set)
        self._inflight: dict[_Key, _Flight] = {}
        self._bus: EventBusProtocol | None = None
        self._listening: set[str] = set()
        self._hits = self._misses = self._evictions = 0
        self._invalidations = self._expirations = self._errors = 0
        self._saved = 0.0

    # registration ---------------------------------------------------------------------------

    def register(self, provider: str, policy: CachePolicy, *, owner: str | None = None) -> None:
        """Declare a provider's policy (again on reload: the old entries are dropped).

        A policy the cache cannot follow is a `ValueError` naming the provider: a negative or
        non-finite ttl, or an `invalidate_on` item that is not an event token."""
        _check_policy(provider, policy)
        if provider in self._registrations:
            self.unregister(provider)
        self._registrations[provider] = _Registration(policy, owner)
        for dependency in policy.dependencies:
            self._dependents[dependency].add(provider)
        for event in policy.invalidate_on:
            self._by_event[event.name].add(provider)
            self._listen(event)

    def bind(self, bus: EventBusProtocol) -> None:
        """Invalidate from `bus`'s events: for each event some policy lists, now and as
        providers register, one subscription that runs before every other handler of it.

        First, so that no handler of ``memory:created`` (nor a detached one it lets run) can
        compose state from an entry the event makes stale."""
        self._bus = bus
        for name in list(self._by_event):
            event = event_named(name)
            if event is not None:
                self._listen(event)

    def _listen(self, event: Event[Any]) -> None:
        if self._bus is None or event.name in self._listening:
            return
        name = event.name

        def invalidate(payload: EventPayload) -> None:
            self.handle_event(name, payload)

        invalidate.__qualname__ = f"ProviderCache.invalidate_on[{name}]"
        self._bus.on(event, invalidate, owner="host", priority=INVALIDATION_PRIORITY)
        self._listening.add(name)

    def unregister(self, provider: str) -> None:
        """Forget a provider: its entries, its in-flight results and its graph edges."""
        self._drop_entries(provider, None)
        registration = self._registrations.pop(provider, None)
        if registration is None:
            return
        for dependency in registration.policy.dependencies:
            self._dependents[dependency].discard(provider)
        for event in registration.policy.invalidate_on:
            self._by_event[event.name].discard(provider)

    def unregister_owner(self, owner: str) -> None:
        """Drop everything a plugin's providers cached (plugin unload or reload)."""
        for provider in [n for n, r in self._registrations.items() if r.owner == owner]:
            self.unregister(provider)

    def owner_of(self, provider: str) -> str | None:
        """The plugin that registered `provider`'s policy (None: unknown provider)."""
        registration = self._registrations.get(provider)
        return None if registration is None else registration.owner

    def policy(self, provider: str) -> CachePolicy | None:
        registration = self._registrations.get(provider)
        return None if registration is None else registration.policy

    # lookup ---------------------------------------------------------------------------------

    async def get_or_compute(
        self, provider: str, context: CacheContext, compute: Callable[[], Awaitable[T]]
    ) -> T:
        """Return the provider's cached value for `context`, or compute it once.

        Concurrent callers for one key share a single computation (single flight): the first
        caller computes it in its own task (no task of its own, no shield: the common case of a
        key nobody else is waiting for costs no more than the call), the others wait for its
        outcome. If the computing caller is cancelled (its timeout, its message dropped), a
        waiter computes the value again instead of failing.
        """
        registration = self._registrations.get(provider)
        if registration is None or not registration.policy.ttl or registration.policy.ttl <= 0:
            return await compute()
        key = _scoped_key(provider, registration.policy.scope, context)
        while True:
            try:
                entry = self._store[key]
            except KeyError:
                pass
            else:
                self._hits += 1
                self._saved += entry.cost
                return entry.value  # type: ignore[no-any-return]
            flight = self._inflight.get(key)
            if flight is None:
                break
            self._hits += 1
            outcome = await flight.wait()
            if outcome is not _ABANDONED:
                return outcome  # type: ignore[no-any-return]
            self._hits -= 1  # the computing caller was cancelled: compute it here instead
        self._misses += 1
        flight = _Flight(provider, CacheContext(*key[1:]))
        self._inflight[key] = flight
        started = time.perf_counter()
        try:
            value = await compute()
        except BaseException as exc:
            if isinstance(exc, Exception):
                self._errors += 1
                flight.fail(exc)
            else:  # cancelled: a waiter, if any, computes it again
                flight.finish(_ABANDONED)
            raise
        finally:  # the waiters wake after this: they find no flight left for the key
            if self._inflight.get(key) is flight:
                del self._inflight[key]
        if not flight.stale:
            self._put(
                key,
                _Entry(
                    value, flight.context, registration.policy.ttl, time.perf_counter() - started, 0
                ),
            )
        flight.finish(value)
        return value

    def _put(self, key: _Key, entry: _Entry) -> None:
        if self._max_bytes is not None:
            entry.size = self._sizeof(entry.value)
            if entry.size > self._max_bytes:
                logger.debug("provider {} result too large to cache ({} B)", key[0], entry.size)
                return
        self._store[key] = entry
        self._keys[key[0]].add(key)
        if self._max_bytes is not None and self._max_entries is not None:
            while len(self._store) > self._max_entries:
                self._store.popitem()

    # invalidation ---------------------------------------------------------------------------

    def invalidate(self, provider: str, context: CacheContext | None = None) -> int:
        """Drop the provider's entries agreeing with `context` (all if None), and its dependents'.

        Dependents are followed transitively; a cycle is visited once. Returns entries dropped.
        """
        dropped = 0
        seen: set[str] = set()
        queue: deque[str] = deque([provider])
        while queue:
            name = queue.popleft()
            if name in seen:
                continue
            seen.add(name)
            dropped += self._drop_entries(name, context)
            queue.extend(self._dependents.get(name, ()))
        self._invalidations += dropped
        return dropped

    def handle_event(self, event_name: str, payload: object) -> int:
        """Invalidate the providers listening for `event_name`, scoped to the payload's context."""
        providers = self._by_event.get(event_name)
        if not providers:
            return 0
        context = context_from_payload(payload)
        return sum(self.invalidate(provider, context) for provider in list(providers))

    @property
    def watched_events(self) -> frozenset[str]:
        """Names of the events some registered provider is invalidated by."""
        return frozenset(name for name, providers in self._by_event.items() if providers)

    def _drop_entries(self, provider: str, context: CacheContext | None) -> int:
        for key, flight in list(self._inflight.items()):
            if key[0] == provider and (context is None or flight.context.agrees_with(context)):
                flight.stale = True
                del self._inflight[key]
        keys = self._keys.get(provider)
        if not keys:
            return 0
        dropped = 0
        for key in list(keys):
            entry = self._store.get(key)
            if entry is None:
                keys.discard(key)
            elif context is None or entry.context.agrees_with(context):
                keys.discard(key)
                try:
                    del self._store[key]
                except KeyError:  # expired between the lookup and now
                    continue
                dropped += 1
        return dropped

    def _dropped(self, key: _Key, why: str) -> None:
        keys = self._keys.get(key[0])
        if keys is not None:
            keys.discard(key)
        if why == "evicted":
            self._evictions += 1
        else:
            self._expirations += 1

    # housekeeping ---------------------------------------------------------------------------

    def purge_expired(self) -> int:
        """Remove expired entries now (they are also purged on every store)."""
        return len(self._store.expire())

    def clear(self) -> None:
        self._store.clear()
        self._keys.clear()
        for flight in self._inflight.values():
            flight.stale = True
        self._inflight.clear()

    def stats(self) -> CacheStats:
        self._store.expire()
        return CacheStats(
            hits=self._hits,
            misses=self._misses,
            evictions=self._evictions,
            invalidations=self._invalidations,
            expirations=self._expirations,
            errors=self._errors,
            entries=len(self._store),
            size_bytes=sum(entry.size for entry in self._store.values())
            if self._max_bytes is not None
            else 0,
            saved_seconds=self._saved,
        )

    def providers(self) -> Iterable[str]:
        return tuple(self._registrations)


def _check_policy(provider: str, policy: CachePolicy) -> None:
    ttl = policy.ttl
    if ttl is not None and not (isinstance(ttl, int | float) and 0 <= ttl < math.inf):
        raise ValueError(
            f"provider {provider}: cache ttl must be seconds >= 0 or None (no caching), got {ttl!r}"
        )
    for event in policy.invalidate_on:
        if not isinstance(event, Event):
            raise ValueError(
                f"provider {provider}: cache invalidate_on takes event tokens "
                f"(e.g. MEMORY_CREATED), got {event!r}"
            )
    for dependency in policy.dependencies:
        if not isinstance(dependency, str):
            raise ValueError(
                f"provider {provider}: cache dependencies are provider names, got {dependency!r}"
            )


def _retrieve_exception(future: asyncio.Future[Any]) -> None:
    # Every waiter may have been cancelled; mark the error as seen so asyncio does not warn.
    if not future.cancelled():
        future.exception()
