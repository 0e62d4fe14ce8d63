"""The store kit: the one host module a memory-store or event-store plugin may import.

`contracts` holds what every plugin uses (the `DatabaseAdapter` and `EventStore` protocols, their
errors, `SearchParams`); a store also needs engine code that every store should share rather
than copy, so that all of them behave alike under the one conformance suite (tests/storage/).
That code is here, and only what is listed in ``__all__`` is the stable surface
(docs/storekit.md). The builtin stores (sqlite, inmemory, postgres, and the audit plugin's event
store) import nothing else of the host: tests/foundation/test_import_rules.py checks it.

- vector index upkeep: `VectorIndexSettings` (a store's config section inherits it),
  `IndexParams`, `IndexSet` (faiss indexes kept in step with a table's versions),
  `VectorIndex`, `check_search`, `query_vector`, `above_threshold` and the float32 helpers;
- table and metadata helpers: `check_table_name`, `content_json`, `metadata_json` (one JSON
  text and one set of limits on every store), their inverses `content_from_json` and
  `metadata_from_json`, `trusted_memory` and `lazy_memory` with its `RowDecoder` (fast rows
  read back);
- batch-write helpers: `unbatched`, `check_dimension`;
- wrapping a store: `ForwardingAdapter`;
- PostgreSQL (imported on first use, with psycopg): `pooled`, `describe_url`, `safe_text`,
  `pool_gauges`, `PostgresEventStore`;
- event stores: `SqliteEventStore` (and its `WriterProcess`), `PayloadEncoder`,
  `schema_version_of`, `is_model`,
  `SECRET_KEYS`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from contracts.storage import BatchError, DimensionMismatchError
from host.eventstore.keyscan import is_model
from host.eventstore.recording import PayloadEncoder, schema_version_of
from host.eventstore.sqlite import SqliteEventStore
from host.eventstore.writer_process import WriterProcess
from host.forwarding import ForwardingAdapter
from host.memory import (
    RowDecoder,
    check_table_name,
    content_from_json,
    content_json,
    lazy_memory,
    metadata_from_json,
    metadata_json,
    trusted_memory,
)
from host.secrets import SECRET_KEYS
from host.vectors import (
    F32,
    F64,
    I64,
    IndexParams,
    IndexSet,
    VectorIndex,
    above_threshold,
    as_vector,
    check_index_type,
    check_search,
    float32_array,
    float32_bytes,
    normalize,
    query_vector,
    to_float32,
)

if TYPE_CHECKING:
    from host.eventstore.postgres import PostgresEventStore
    from host.pgpool import describe_url, pooled, safe_text

__all__ = [
    "F32",
    "F64",
    "I64",
    "SECRET_KEYS",
    "ForwardingAdapter",
    "IndexParams",
    "IndexSet",
    "PayloadEncoder",
    "PostgresEventStore",
    "RowDecoder",
    "SqliteEventStore",
    "VectorIndex",
    "VectorIndexSettings",
    "WriterProcess",
    "above_threshold",
    "as_vector",
    "check_dimension",
    "check_index_type",
    "check_search",
    "check_table_name",
    "content_from_json",
    "content_json",
    "describe_url",
    "float32_array",
    "float32_bytes",
    "is_model",
    "lazy_memory",
    "metadata_from_json",
    "metadata_json",
    "normalize",
    "pool_gauges",
    "pooled",
    "query_vector",
    "safe_text",
    "schema_version_of",
    "to_float32",
    "trusted_memory",
    "unbatched",
]

T = TypeVar("T")

_LAZY = {
    "PostgresEventStore": "host.eventstore.postgres",
    "describe_url": "host.pgpool",
    "pooled": "host.pgpool",
    "safe_text": "host.pgpool",
}
"""Names imported on first use: they import psycopg (~60 ms), which a SQLite host never needs."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


class VectorIndexSettings(BaseModel):
    """The vector index fields a store's config section shares (``plugins.<store>``): inherit
    it, override a default by declaring the field again, and pass `index_params()` to the
    indexes. The defaults suit faiss (sqlite, inmemory); postgres declares pgvector's."""

    model_config = ConfigDict(extra="forbid")

    hnsw_m: int = Field(default=32, ge=4)
    """HNSW graph degree (faiss ``M``, pgvector ``m``)."""
    hnsw_ef_construction: int = Field(default=80, ge=8)
    """HNSW build-time candidate list size."""
    hnsw_ef_search: int | None = Field(default=None, ge=1)
    """HNSW query-time candidate list size when a search passes none. None: tuned per HNSW
    graph when it is built (recall@10 >= 0.95 on held-out rows)."""
    ivf_lists: int | None = Field(default=None, ge=1)
    """IVF inverted lists (None: about the square root of the rows)."""
    ivf_probes: int | None = Field(default=None, ge=1)
    """IVF lists scanned per query when a search passes none (None: an eighth of them)."""

    def index_params(self) -> IndexParams:
        """These settings as the parameters `IndexSet` and `VectorIndex` take."""
        return IndexParams.of(self)


async def unbatched(call: Awaitable[list[T]]) -> T:
    """The one result of a one-row batch `call`, its row's own error raised as itself rather
    than as a `BatchError`: ``create_memory`` as ``create_memories_batch([memory])``."""
    try:
        return (await call)[0]
    except BatchError as exc:
        raise exc.cause from None


def check_dimension(table: str, dimension: int | None, got: int) -> int:
    """`table`'s embedding dimension once a `got`-long embedding is written to it: fixed by
    the first one (`dimension` None), else `DimensionMismatchError` unless they agree."""
    if dimension is None:
        return got
    if got != dimension:
        raise DimensionMismatchError(table, dimension, got)
    return dimension


class _StatsPool(Protocol):
    def get_stats(self) -> Mapping[str, int]: ...


def pool_gauges(pool: _StatsPool) -> dict[str, float]:
    """A psycopg_pool pool's figures, named after OpenTelemetry's database conventions
    (``db.client.connection.count``...): what a store plugin's `metric_gauges` returns."""
    from host.metrics.sampler import pool_source

    return {str(name): value for name, value in pool_source(pool)().items()}
