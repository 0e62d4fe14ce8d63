"""The index kinds, their build and search parameters, and the checks a search's parameters pass.

Shared by the in-process indexes (this package) and every store's `search_memories`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from contracts.storage import IndexType, InvalidQueryError, SearchParams

__all__ = [
    "EXACT_FILTER_LIMIT",
    "INDEX_TYPES",
    "IndexParams",
    "IndexSettings",
    "check_index_type",
    "check_search",
]

INDEX_TYPES: tuple[IndexType, ...] = ("flat", "ivf", "hnsw")

EXACT_FILTER_LIMIT = 4096
"""A filtered approximate search whose allowed rows are at most this many (or under a tenth of
the index) scores them exactly instead. faiss applies a selector inside its ANN search: HNSW
still walks ef_search candidates of the whole graph and IVF its probed lists, keeping only the
allowed ones, so a selective filter (a room among many) found a few of its rows or none. Scoring
4096 384-d vectors exactly costs about what the selector search did (~1.5 ms)."""


@dataclass(frozen=True, slots=True)
class IndexParams:
    """Build and default search parameters of the approximate indexes."""

    hnsw_m: int = 32
    """HNSW graph degree (faiss ``M``)."""
    hnsw_ef_construction: int = 80
    """HNSW build-time candidate list size."""
    hnsw_ef_search: int | None = None
    """HNSW query-time candidate list size when a search passes none; None tunes it when the
    graph is built (`VectorIndex.tuned_ef`: recall@10 >= 0.95 on the table's own vectors)."""
    ivf_lists: int | None = None
    """IVF inverted lists; None picks ``sqrt(n)`` bounded by the training data."""
    ivf_probes: int | None = None
    """IVF lists scanned per query when a search passes none; None scans an eighth of the
    lists (at least 8): recall@10 about 0.9 on 384-d embeddings."""

    @classmethod
    def of(cls, settings: IndexSettings) -> IndexParams:
        """The parameters a store plugin's settings give (fields of the same names)."""
        return cls(
            hnsw_m=settings.hnsw_m,
            hnsw_ef_construction=settings.hnsw_ef_construction,
            hnsw_ef_search=settings.hnsw_ef_search,
            ivf_lists=settings.ivf_lists,
            ivf_probes=settings.ivf_probes,
        )


class IndexSettings(Protocol):
    """What a store plugin's settings hold for its vector indexes (`IndexParams.of`)."""

    hnsw_m: int
    hnsw_ef_construction: int

    @property
    def hnsw_ef_search(self) -> int | None: ...  # read-only: a plugin may hold a plain int

    ivf_lists: int | None
    ivf_probes: int | None


def check_search(params: SearchParams) -> IndexType:
    """A search's `params` checked alike on every store: a known index type, k >= 1, and for
    its own index type a `probes` / `ef_search` >= 1 (0 or None: the default), whatever index
    ends up answering (an exact one on a small table or during a build)."""
    kind = check_index_type(params.index_type)
    if params.k < 1:
        raise InvalidQueryError(f"k must be >= 1, got {params.k}")
    if kind == "hnsw" and (params.ef_search or 1) < 1:
        raise InvalidQueryError(f"ef_search must be >= 1, got {params.ef_search}")
    if kind == "ivf" and (params.probes or 1) < 1:
        raise InvalidQueryError(f"probes must be >= 1, got {params.probes}")
    return kind


def check_index_type(index_type: str) -> IndexType:
    """`index_type` if it names a known index, else `InvalidQueryError`."""
    if index_type not in INDEX_TYPES:
        raise InvalidQueryError(
            f"unknown index_type {index_type!r}: expected one of {', '.join(INDEX_TYPES)}"
        )
    return index_type
