"""The SQL of a vector search: exact (a scan ordered by cosine distance) or approximate (through
a pgvector index, with the setting that bounds its effort), and pgvector's limits on both.
"""

from __future__ import annotations

from psycopg import sql

from contracts.storage import SearchParams
from host.storekit import IndexParams

from .schema import indexed_expression

__all__ = [
    "ANN_ONLY",
    "HNSW_MAX_EF_SEARCH",
    "IVF_MAX_PROBES",
    "ann_setting",
    "ann_statement",
    "exact_statement",
]

ANN_ONLY = (
    # The index asked for, not the planner's pick: with stale statistics (a table just
    # bulk-loaded) it scans and sorts every row instead. One statement: a pipeline sends each
    # statement on its own (extended protocol), and these settings last until the commit.
    "SELECT set_config(%s, %s, true), set_config('enable_seqscan', 'off', true),"
    " set_config('enable_bitmapscan', 'off', true), set_config('enable_sort', 'off', true)"
)
HNSW_MAX_EF_SEARCH = 1000
"""pgvector's upper bound of ``hnsw.ef_search``; an HNSW scan returns at most that many rows, so a
search for more is answered exactly."""
IVF_MAX_PROBES = 32768
"""pgvector's upper bound of ``ivfflat.probes`` (and of the lists an index can have)."""


def exact_statement(columns: str, where: sql.Composable) -> sql.Composed:
    """An exact search: parameters the query vector, `where`'s, and k.

    pgvector's cosine distance to a zero vector is NaN, which sorts after every number; the
    other stores score it 0 (distance 1), and so does this one. The top k are chosen from
    (id, distance) pairs and only their rows read after: sorting whole rows dragged every
    1.5 KB vector through the sort."""
    return sql.SQL(
        "SELECT " + columns + ", top.distance FROM (SELECT id,"
        " COALESCE(NULLIF(embedding <=> %s, 'NaN'::float8), 1.0) AS distance"
        " FROM memories{w} ORDER BY distance, id LIMIT %s) AS top"
        " JOIN memories USING (id) ORDER BY top.distance, id"
    ).format(w=where)


def ann_statement(columns: str, where: sql.Composable, kind: str, dim: int) -> sql.Composed:
    """An approximate search through the `kind` index: parameters the query vector, `where`'s,
    the query vector again, and k."""
    distance = sql.SQL("({e} <=> %s::vector({dim}))").format(
        e=indexed_expression(kind, dim), dim=sql.Literal(dim)
    )
    return sql.SQL(
        "SELECT " + columns + ", {d} AS distance FROM memories{w} ORDER BY {d} LIMIT %s"
    ).format(d=distance, w=where)


def ann_setting(search: SearchParams, defaults: IndexParams, lists: int) -> tuple[str, int]:
    """The pgvector setting and value an approximate `search` runs with (`lists`: the IVF
    index's list count)."""
    if search.index_type == "hnsw":
        ef = max(search.ef_search or defaults.hnsw_ef_search or 64, search.k)
        return "hnsw.ef_search", min(ef, HNSW_MAX_EF_SEARCH)
    nprobe = search.probes or defaults.ivf_probes or max(1, lists // 8)
    return "ivfflat.probes", min(nprobe, IVF_MAX_PROBES)
