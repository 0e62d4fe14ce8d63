"""Choosing an HNSW graph's own `ef_search` from its table's vectors (`VectorIndex.tuned_ef`).

Own module because it measures (recall against exact search, and the cost of a one-query search
by clock) rather than indexes; `VectorIndex._build_tuned` holds rows out and calls `choose_ef`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from host.vectors import lazy
from host.vectors.arrays import F32

__all__ = [
    "TUNE_GROWTH",
    "TUNE_LADDER",
    "TUNE_MIN_ROWS",
    "TUNE_QUERIES",
    "TUNE_RECALL",
    "choose_ef",
]

TUNE_RECALL = 0.965
"""Recall@10 an HNSW graph's own `ef_search` is tuned to reach on its held-out sample: the
target is 0.95 on fresh queries, and a sample of 256 queries measures within about +-0.01."""
TUNE_QUERIES = 256
"""Rows held out of a new HNSW graph to tune its `ef_search` (at most a tenth of the table)."""
TUNE_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
"""`ef_search` values tried, smallest first; the first reaching `TUNE_RECALL` is kept."""
TUNE_GROWTH = 2
"""An HNSW graph tuned for n rows is rebuilt (and tuned again) past `TUNE_GROWTH` x n rows (and
at least `TUNE_MIN_ROWS`): the ef a graph needs grows with it, so an index first built over a
few rows would otherwise keep a small table's ef at 100k rows."""
TUNE_MIN_ROWS = 1000


def choose_ef(graph: Any, base: F32, queries: F32) -> tuple[int, float] | None:
    """The smallest `ef_search` (and the recall it reached) whose top 10 for held-out `queries`
    reaches `TUNE_RECALL` against exact search over `base`, the rows `graph` holds; None when
    no ef reaches it before a graph search costs more than scoring every row exactly."""
    held = len(queries)
    take = min(10, len(base))
    # the take-th best exact score of each query: a result scoring at least that is a hit
    # (compared by score, so identical vectors sharing a node count alike)
    kth = np.concatenate(
        [
            -np.partition(-(queries[i : i + 32] @ base.T), take - 1, axis=1)[:, take - 1]
            for i in range(0, held, 32)
        ]
    )
    flat = lazy.faiss.downcast_index(graph.storage)
    flat_cost = _one_by_one(flat, queries[:8], take, None)
    for ef in TUNE_LADDER:
        params = lazy.faiss.SearchParametersHNSW(efSearch=ef)
        if _one_by_one(graph, queries[:8], take, params) > flat_cost:
            return None  # this ef and any larger one cost more than exact search
        scores, ids = graph.search(queries, take, params=params)
        hits = ((scores >= kth[:, None] - 1e-6) & (ids >= 0)).sum()
        recall = float(hits) / (held * take)
        if recall >= TUNE_RECALL or ef >= len(base):
            return ef, recall
    return None


def _one_by_one(index: Any, queries: F32, k: int, params: Any) -> float:
    """Median seconds of one-query searches of `index`, on one thread, as searches run."""
    threads = lazy.faiss.omp_get_max_threads()
    lazy.omp_threads(1)
    try:
        spent = []
        for i in range(len(queries)):
            started = time.perf_counter()
            index.search(queries[i : i + 1], k, params=params)
            spent.append(time.perf_counter() - started)
        return float(np.median(spent))
    finally:
        lazy.omp_threads(threads)
