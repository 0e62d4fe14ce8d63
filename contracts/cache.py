"""The provider cache's public surface: the scope a cached value belongs to, stats, the protocol.

Policies live on providers (`contracts.agent.CachePolicy`); the engine is `host.cache`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from contracts.tokens import Token

__all__ = ["CACHE", "CacheContext", "CacheStats", "ProviderCacheProtocol"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CacheContext:
    """Where a value was computed or an invalidation applies.

    An invalidation with a context touches the entries whose known fields all agree with the
    context's known fields: a room-A event leaves room-B entries alone, while an entry or an
    invalidation that does not know a field (a global entry, an event without a room) matches on
    the rest. Erring this way can drop a valid entry, never keep a stale one.
    """

    agent_id: str | None = None
    room_id: str | None = None
    entity_id: str | None = None
    message_id: str | None = None

    def agrees_with(self, other: CacheContext) -> bool:
        """True when no field is known to both contexts with different values."""
        for mine, theirs in (
            (self.agent_id, other.agent_id),
            (self.room_id, other.room_id),
            (self.entity_id, other.entity_id),
            (self.message_id, other.message_id),
        ):
            if mine is not None and theirs is not None and mine != theirs:
                return False
        return True


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters since start, for metrics and `agenthost stats`."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    invalidations: int = 0
    expirations: int = 0
    errors: int = 0
    """Provider calls that raised (never cached)."""
    entries: int = 0
    size_bytes: int = 0
    saved_seconds: float = 0.0
    """Compute time the hits did not spend (sum of the cached computations' durations)."""

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


@runtime_checkable
class ProviderCacheProtocol(Protocol):
    """What the runtime needs from a provider cache (in-process by default, shareable later)."""

    async def get_or_compute(
        self, provider: str, context: CacheContext, compute: Callable[[], Awaitable[T]]
    ) -> T:
        """Return the cached value or compute it once, however many callers ask at the same time."""
        ...

    def invalidate(self, provider: str, context: CacheContext | None = None) -> int:
        """Drop the provider's matching entries and its dependents'; return how many went."""
        ...

    def stats(self) -> CacheStats: ...


CACHE: Token[ProviderCacheProtocol] = Token("cache", ProviderCacheProtocol)
