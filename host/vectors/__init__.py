"""In-process vector indexes (faiss) shared by the sqlite and inmemory memory backends.

The names below are the package's surface (host.storekit re-exports most of them); each lives
in the module of its job:

- `kinds`: the index types, their parameters (`IndexParams`, `IndexSettings`) and the checks a
  search's parameters pass (`check_search`, `check_index_type`);
- `arrays`: vectors as float32 arrays (`float32_bytes`, `query_vector`, `exact_top_k`, ...);
- `index`: `VectorIndex`, one faiss index over labelled vectors, with its exact fallbacks;
- `tuning`: an HNSW graph's own `ef_search`, measured on its table's vectors;
- `builds`: `IndexSet`, the indexes of every table, built off the owner's thread;
- `lazy`: faiss, imported at its first use.
"""

from __future__ import annotations

from host.vectors.arrays import (
    F32,
    F64,
    I64,
    above_threshold,
    as_vector,
    exact_top_k,
    float32_array,
    float32_bytes,
    normalize,
    query_vector,
    stored_vector,
    to_float32,
)
from host.vectors.builds import IndexSet
from host.vectors.index import VectorIndex
from host.vectors.kinds import (
    EXACT_FILTER_LIMIT,
    IndexParams,
    IndexSettings,
    check_index_type,
    check_search,
)
from host.vectors.lazy import faiss
from host.vectors.tuning import TUNE_LADDER, TUNE_MIN_ROWS, TUNE_RECALL

__all__ = [
    "EXACT_FILTER_LIMIT",
    "F32",
    "F64",
    "I64",
    "TUNE_LADDER",
    "TUNE_MIN_ROWS",
    "TUNE_RECALL",
    "IndexParams",
    "IndexSet",
    "IndexSettings",
    "VectorIndex",
    "above_threshold",
    "as_vector",
    "check_index_type",
    "check_search",
    "exact_top_k",
    "faiss",
    "float32_array",
    "float32_bytes",
    "normalize",
    "query_vector",
    "stored_vector",
    "to_float32",
]
