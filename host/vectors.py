"""In-process vector indexes (faiss) shared by the sqlite and inmemory memory backends.

A `VectorIndex` maps caller labels (a SQLite rowid, an in-memory row number) to vectors and
answers cosine top-k queries, exactly (``flat``) or approximately (``ivf``, ``hnsw``). Vectors
are L2-normalised on the way in so inner product equals cosine similarity.

faiss ids are internal and sequential; a removed or replaced label is tombstoned (HNSW cannot
delete) and masked out with an `IDSelectorBitmap` at search time. When tombstones pass a quarter
of the index, or an IVF index has grown well past the data it was trained on, `needs_rebuild`
turns true and the owner rebuilds it from its table, the source of truth.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard

import numpy as np
import numpy.typing as npt

from contracts.storage import IndexType, InvalidQueryError, SearchParams
from contracts.vector import Vector, VectorLike

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
    "float32_array",
    "float32_bytes",
    "normalize",
    "query_vector",
    "stored_vector",
    "to_float32",
]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_INDEX_TYPES: tuple[str, ...] = ("flat", "ivf", "hnsw")

EXACT_FILTER_LIMIT = 4096
"""A filtered approximate search whose allowed rows are at most this many (or under a tenth of
the index) scores them exactly instead. faiss applies a selector inside its ANN search: HNSW
still walks ef_search candidates of the whole graph and IVF its probed lists, keeping only the
allowed ones, so a selective filter (a room among many) found a few of its rows or none. Scoring
4096 384-d vectors exactly costs about what the selector search did (~1.5 ms)."""

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

_BUILD_THREADS: int = 0
"""OpenMP threads for building and adding (training, graph construction: worth parallelising).
A search is one query: it runs on one thread, because an OpenMP region for a single query costs
more than it saves (waking the team, then its spinning threads take the core the event loop
needs; an IVF search on the SQLite worker thread took twice as long with them). OpenMP's thread
count is per calling thread, so this is set around each call, not process-wide. Read when faiss
is first used."""


class _LazyFaiss:
    """faiss, imported at its first use (an index built or searched), not at start-up (~60 ms).
    Untyped: faiss's bundled stubs lag behind its SWIG API (SearchParametersHNSW, selectors)."""

    def __getattr__(self, name: str) -> Any:
        global faiss, _BUILD_THREADS
        import faiss as module

        _BUILD_THREADS = module.omp_get_max_threads()  # before any thread sets its own count
        faiss = module  # later uses go straight to the module
        return getattr(module, name)


faiss: Any = _LazyFaiss()


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


def to_float32(vectors: Sequence[Sequence[float]] | npt.ArrayLike) -> F32:
    """A C-contiguous 2-d float32 copy of `vectors`."""
    arr = np.array(vectors, dtype=np.float32, copy=True, ndmin=2)
    return np.ascontiguousarray(arr)


def normalize(vectors: F32) -> F32:
    """Rows scaled to unit length in place (zero rows stay zero: their cosine is 0)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=norms > 0)
    return vectors


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


def above_threshold(
    labels: list[int], scores: list[float], threshold: float | None
) -> tuple[list[int], list[float]]:
    """The (labels, scores) of a search scoring at least `threshold` (all when None)."""
    if threshold is None:
        return labels, scores
    kept = [(label, s) for label, s in zip(labels, scores, strict=True) if s >= threshold]
    return [label for label, _ in kept], [s for _, s in kept]


def check_index_type(index_type: str) -> IndexType:
    """`index_type` if it names a known index, else `InvalidQueryError`."""
    if index_type not in _INDEX_TYPES:
        raise InvalidQueryError(
            f"unknown index_type {index_type!r}: expected one of {', '.join(_INDEX_TYPES)}"
        )
    return index_type  # type: ignore[return-value]


def stored_vector(embedding: VectorLike) -> Vector:
    """`embedding` as a `Vector` (itself when it is one, the usual case: `Memory` validated it);
    ValueError for values a Vector refuses (a list put in by ``model_copy``, which validates
    nothing: non-finite, overflowing float32, empty)."""
    return embedding if type(embedding) is Vector else Vector(embedding)


def float32_bytes(embedding: VectorLike) -> bytes:
    """float32 little-endian bytes of `embedding`, as every backend stores it (ValueError as
    `stored_vector`). A `Vector` hands over its array's bytes: 0.2 us for 384 values."""
    if type(embedding) is Vector:
        return embedding.tobytes()
    return Vector(embedding).tobytes()


def float32_array(embedding: VectorLike) -> F32:
    """`embedding` as a read-only float32 array (ValueError as `stored_vector`), no copy for a
    `Vector`."""
    return stored_vector(embedding).array


def as_vector(embedding: VectorLike | npt.ArrayLike) -> F64:
    """A 1-d float64 copy of `embedding` (exact for Python floats: nothing overflows yet)."""
    if type(embedding) is Vector:
        return embedding.array.astype(np.float64)
    return np.array(embedding, dtype=np.float64).reshape(-1)


def query_vector(embedding: Sequence[float] | npt.ArrayLike, dim: int) -> F32:
    """The normalised 1 x dim float32 query; `InvalidQueryError` for a zero or non-finite vector.

    Normalised in float64, so values beyond float32's range still give a unit vector."""
    q = embedding if _is_f64(embedding) else as_vector(embedding)
    if len(q) != dim:
        raise InvalidQueryError(f"query embedding has {len(q)} dimensions, expected {dim}")
    # vdot: a norm beyond float64 becomes inf (refused below) without the overflow warning
    # `@` and np.dot give, so no np.errstate (which cost more than the rest of this function)
    norm = math.sqrt(float(np.vdot(q, q)))
    if not math.isfinite(norm) or norm == 0.0:
        raise InvalidQueryError("query embedding must be finite and non-zero")
    return (q * (1.0 / norm)).astype(np.float32).reshape(1, dim)


def _is_f64(value: object) -> TypeGuard[F64]:
    """A 1-d float64 array (`as_vector`'s result: `query_vector` need not copy it again)."""
    return isinstance(value, np.ndarray) and value.dtype == np.float64 and value.ndim == 1


def exact_top_k(query: F32, matrix: F32, labels: I64, k: int) -> tuple[list[int], list[float]]:
    """Exact cosine top-k of normalised `query` over normalised `matrix` rows (ties by label)."""
    if len(labels) == 0:
        return [], []
    scores = matrix @ query.reshape(-1)
    take = min(k, len(labels))
    # lexsort: last key is primary; sort by score desc then label asc.
    order = np.lexsort((labels, -scores))[:take]
    return labels[order].tolist(), scores[order].astype(float).tolist()


class VectorIndex:
    """One faiss index over labelled, normalised vectors of one dimension. Not thread-safe."""

    def __init__(self, kind: IndexType, dim: int, params: IndexParams | None = None) -> None:
        self.kind: IndexType = check_index_type(kind)
        self.dim = dim
        self.params = params or IndexParams()
        self.version: int = 0
        """The owner's table version this index reflects (the owner keeps it current)."""
        self._index: Any = None
        self._ext = np.empty(0, dtype=np.int64)  # internal id -> label, -1 when tombstoned
        self._pos: dict[int, int] = {}  # label -> internal id (live only)
        self._dead = 0
        self._trained_on = 0
        self._live: npt.NDArray[np.uint8] | None = None  # cached bitmap of live ids
        # HNSW: internal id -> its labels besides _ext's (identical vectors share one node), and
        # hash of a vector's bytes -> internal ids holding it (see _alias_duplicates)
        self._dups: dict[int, list[int]] = {}
        self._by_key: dict[int, list[int]] = {}
        self._params: dict[tuple[int | None, int | None], Any] = {}  # see _shared_params
        self.tuned_ef: int | None = None
        """HNSW: the `ef_search` its build measured (None: configured, or not HNSW)."""
        self.tuned_recall: float | None = None
        """The held-out recall@10 `tuned_ef` reached when it was measured."""
        self.exact = False
        """HNSW: searches passing no ef_search score every stored vector (`_build_tuned`)."""
        self._tuned_on = 0  # rows the graph held when its ef was tuned

    def __len__(self) -> int:
        return len(self._pos)

    @property
    def needs_rebuild(self) -> bool:
        """Too many tombstones, or an IVF quantizer trained on far less data than it holds."""
        total = len(self._ext)
        if total and self._dead > max(64, total // 4):
            return True
        if self._tuned_on and len(self._pos) > TUNE_GROWTH * max(self._tuned_on, TUNE_MIN_ROWS):
            return True
        return self.kind == "ivf" and len(self._pos) > 4 * max(self._trained_on, 256)

    def build(self, labels: I64, vectors: F32) -> None:
        """Replace the content with `vectors` (normalised, n x dim) under `labels`."""
        faiss.omp_set_num_threads(_BUILD_THREADS)
        self._ext = np.empty(0, dtype=np.int64)
        self._pos = {}
        self._dups = {}
        self._by_key = {}
        self._dead = 0
        self._live = None
        self._index = self._new_index(vectors)
        labels = np.asarray(labels, dtype=np.int64)
        if self.kind == "hnsw" and self.params.hnsw_ef_search is None:
            self._build_tuned(labels, vectors)
        else:
            self._append(labels, vectors)

    def _build_tuned(self, labels: I64, vectors: F32) -> None:
        """Build the graph without a random sample of its rows and choose the smallest
        `ef_search` whose top 10 for those held-out rows (fresh queries from the table's own
        distribution) reaches `TUNE_RECALL` against exact search; then add them. Searches
        passing no `ef_search` use it (scaled up for k > 10: `default_ef`).

        When no ef reaches it before a graph search costs more than scoring every row (data
        without low-dimensional structure: uniform random 384-d vectors need ef > 1024 at 100k
        rows, visiting most of the graph), or the table is tiny, `exact` turns true: such
        searches score the graph's stored vectors exactly, which is then both cheaper and
        right. A search passing its own `ef_search` always walks the graph."""
        n = len(labels)
        held = min(TUNE_QUERIES, n // 10)
        self._tuned_on = n
        if held < 8:  # a handful of rows: exact scoring is as cheap as anything
            self.tuned_ef, self.tuned_recall, self.exact = None, 1.0, True
            self._append(labels, vectors)
            return
        order = np.random.default_rng(n).permutation(n)
        rest, out = np.sort(order[held:]), np.sort(order[:held])
        base = np.ascontiguousarray(vectors[rest])
        queries = np.ascontiguousarray(vectors[out])
        self._append(labels[rest], base)
        take = min(10, len(rest))
        # the take-th best exact score of each query: a result scoring at least that is a hit
        # (compared by score, so identical vectors sharing a node count alike)
        kth = np.concatenate(
            [
                -np.partition(-(queries[i : i + 32] @ base.T), take - 1, axis=1)[:, take - 1]
                for i in range(0, held, 32)
            ]
        )
        flat = faiss.downcast_index(self._index.storage)
        flat_cost = _one_by_one(flat, queries[:8], take, None)
        chosen: tuple[int, float] | None = None
        for ef in TUNE_LADDER:
            params = faiss.SearchParametersHNSW(efSearch=ef)
            if _one_by_one(self._index, queries[:8], take, params) > flat_cost:
                break  # this ef and any larger one cost more than exact search
            scores, ids = self._index.search(queries, take, params=params)
            hits = ((scores >= kth[:, None] - 1e-6) & (ids >= 0)).sum()
            recall = float(hits) / (held * take)
            if recall >= TUNE_RECALL or ef >= len(rest):
                chosen = (ef, recall)
                break
        if chosen is None:
            self.tuned_ef, self.tuned_recall, self.exact = None, 1.0, True
        else:
            (self.tuned_ef, self.tuned_recall), self.exact = chosen, False
        self._append(labels[out], queries)

    def default_ef(self, k: int) -> int:
        """HNSW `ef_search` of a search for `k` passing none: the configured one, else the tuned
        one (tuned for k = 10), scaled by k / 10 for larger k (faiss searches with at least k
        candidates whatever the ef: a configured ef is left as it is)."""
        if self.params.hnsw_ef_search:
            return self.params.hnsw_ef_search
        ef = self.tuned_ef or TUNE_LADDER[-1]
        return ef if k <= 10 else -(-ef * k // 10)

    def add(self, labels: Iterable[int], vectors: F32) -> None:
        """Add (or replace) vectors under `labels`."""
        labels = list(labels)
        if not labels:
            return
        faiss.omp_set_num_threads(_BUILD_THREADS)
        self.remove(label for label in labels if label in self._pos)
        if self._index is None:
            self.build(np.asarray(labels, dtype=np.int64), vectors)
            return
        self._append(np.asarray(labels, dtype=np.int64), vectors)

    def _append(self, labels: I64, vectors: F32) -> None:
        """Add `labels` (none of them present) with their `vectors` to the faiss index."""
        if len(set(labels.tolist())) != len(labels):
            raise ValueError("duplicate labels in one vector index write")
        if self.kind == "hnsw" and len(labels):
            fresh = self._alias_duplicates(labels, vectors)
            if not fresh.all():
                labels, vectors = labels[fresh], np.ascontiguousarray(vectors[fresh])
        start = len(self._ext)
        self._live = None
        self._ext = np.concatenate([self._ext, labels])
        self._pos.update(zip(labels.tolist(), range(start, start + len(labels)), strict=True))
        if len(labels):
            self._index.add(vectors)  # faiss ids run on from ntotal == start

    def _alias_duplicates(self, labels: I64, vectors: F32) -> npt.NDArray[np.bool_]:
        """HNSW only: a vector equal to a live node's becomes another label of that node.

        A group of more identical vectors than a node has links (2 x hnsw_m at level 0) links
        only to itself (equal distances never prune each other) and becomes a sink of the
        graph: searches entering it cannot leave, and other rows went unfound (100 copies of
        one embedding, an empty message's, cost a 16-d HNSW a third of its top-1 hits). Which
        rows get a node of their own (False: aliased) is returned."""
        fresh = np.ones(len(labels), dtype=bool)
        node = len(self._ext)
        pending: dict[int, int] = {}  # node not yet added -> its row in `vectors`
        for row, (label, vector) in enumerate(zip(labels.tolist(), vectors, strict=True)):
            key = hash(vector.tobytes())
            nodes = self._by_key.setdefault(key, [])
            for other in nodes:
                if other in pending:
                    same = np.array_equal(vectors[pending[other]], vector)
                else:
                    same = self._ext[other] >= 0 and np.array_equal(
                        self._index.reconstruct(other), vector
                    )
                if same:
                    self._dups.setdefault(other, []).append(label)
                    self._pos[label] = other
                    fresh[row] = False
                    break
            else:
                nodes.append(node)
                pending[node] = row
                node += 1
        return fresh

    def remove(self, labels: Iterable[int]) -> None:
        """Tombstone `labels` (unknown labels are ignored)."""
        for label in labels:
            internal = self._pos.pop(label, None)
            if internal is None:
                continue
            dups = self._dups.get(internal)
            if dups:  # the node stays, under one of its other labels
                if self._ext[internal] == label:
                    self._ext[internal] = dups.pop()
                else:
                    dups.remove(label)
                if not dups:
                    del self._dups[internal]
                continue
            self._ext[internal] = -1
            self._dead += 1
            self._live = None

    def search(
        self,
        query: F32,
        k: int,
        *,
        allowed: Iterable[int] | None = None,
        probes: int | None = None,
        ef_search: int | None = None,
    ) -> tuple[list[int], list[float]]:
        """Labels and cosine scores of the top-`k` live vectors (among `allowed` labels if set)."""
        if self._index is None or not self._pos or k < 1:
            return [], []
        faiss.omp_set_num_threads(1)  # see _BUILD_THREADS
        exact = False
        target = self._index
        if self.kind == "hnsw" and not ef_search:
            if self.exact:  # the graph's own flat storage, scored exactly (_build_tuned)
                exact, target = True, faiss.downcast_index(self._index.storage)
            else:
                ef_search = self.default_ef(k)
        bitmap = None
        take = min(k, len(self._pos))
        kept: list[int] = []
        ids: list[int] = []
        if allowed is not None:
            pos = self._pos
            kept = [label for label in allowed if label in pos]
            if not kept:
                return [], []
            ids = [pos[label] for label in kept]
            take = min(k, len(kept))
            if self.kind != "flat" and (
                len(ids) <= EXACT_FILTER_LIMIT or len(ids) * 10 <= len(self._pos)
            ):
                self._shared_params(probes, ef_search)  # the same argument errors as below
                return self._exact(query, ids, kept, take)
            mask = np.zeros(len(self._ext), dtype=bool)
            mask[ids] = True
            bitmap = np.packbits(mask, bitorder="little")
        elif self._dead:
            bitmap = self._live_bitmap()
        if bitmap is None:
            params = None if exact else self._shared_params(probes, ef_search)
            scores, ids_out = target.search(query, take, params=params)
        else:
            params = faiss.SearchParameters() if exact else self._search_params(probes, ef_search)
            # The selector reads `bitmap` during the search: both stay referenced until then.
            selector = faiss.IDSelectorBitmap(len(self._ext), faiss.swig_ptr(bitmap))
            params.sel = selector
            scores, ids_out = target.search(query, take, params=params)
            del selector, bitmap
        found = ids_out[0]
        if allowed is None and not self._dead and not self._dups and found[-1] >= 0:
            # the usual case (no tombstone, no alias, `take` found): labels as they are
            return self._ext[found].tolist(), scores[0].tolist()
        hit = found >= 0
        labels = self._ext[found[hit]]
        live = labels >= 0
        if self._dups:
            out_labels, out_scores = self._expand(
                found[hit][live], scores[0][hit][live], take, None if allowed is None else kept
            )
        else:
            out_labels, out_scores = labels[live].tolist(), scores[0][hit][live].tolist()
        if allowed is not None and self.kind != "flat" and len(out_labels) < take:
            return self._exact(query, ids, kept, take)  # the filtered ANN search came up short
        return out_labels, out_scores

    def _expand(
        self, nodes: I64, scores: F32, take: int, allowed: list[int] | None
    ) -> tuple[list[int], list[float]]:
        """The labels of HNSW result `nodes` (every label of a node holding duplicates)."""
        wanted = None if allowed is None else set(allowed)
        out_labels: list[int] = []
        out_scores: list[float] = []
        for node, score in zip(nodes.tolist(), scores.tolist(), strict=True):
            for label in (int(self._ext[node]), *self._dups.get(node, ())):
                if wanted is None or label in wanted:
                    out_labels.append(label)
                    out_scores.append(score)
            if len(out_labels) >= take:
                break
        return out_labels[:take], out_scores[:take]

    def _exact(
        self, query: F32, ids: list[int], labels: list[int], take: int
    ) -> tuple[list[int], list[float]]:
        """Exact top-`take` of the live `labels` (internal ids `ids`), from the stored vectors."""
        internal = np.asarray(ids, dtype=np.int64)
        names = np.asarray(labels, dtype=np.int64)
        vectors = self._index.reconstruct_batch(internal)
        scores = vectors @ query.reshape(-1)
        if take < len(scores):
            top = np.argpartition(-scores, take - 1)[:take]
            names, scores = names[top], scores[top]
        order = np.lexsort((names, -scores))
        return names[order].tolist(), scores[order].astype(float).tolist()

    def _live_bitmap(self) -> npt.NDArray[np.uint8]:
        """The faiss bitmap of live internal ids, cached until the next add or remove."""
        if self._live is None:
            self._live = np.packbits(self._ext >= 0, bitorder="little")
        return self._live

    def _new_index(self, vectors: F32) -> Any:
        metric = faiss.METRIC_INNER_PRODUCT
        if self.kind == "flat":
            return faiss.IndexFlatIP(self.dim)
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.params.hnsw_m, metric)
            index.hnsw.efConstruction = self.params.hnsw_ef_construction
            return index
        n = len(vectors)
        lists = self.params.ivf_lists or int(math.sqrt(n))
        # faiss wants ~39 training points per list; fewer lists than that just degrade to flat.
        lists = max(1, min(lists, n // 39 if n >= 39 else 1))
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, lists, metric)
        index.cp.min_points_per_centroid = 1  # small tables: no "too few points" warnings
        if n:
            index.train(vectors)
        else:
            index.train(np.zeros((1, self.dim), dtype=np.float32))
        index.make_direct_map(True)  # reconstruct() for exact filtered searches (8 B a vector)
        self._trained_on = n
        return index

    def _shared_params(self, probes: int | None, ef_search: int | None) -> Any:
        """Search parameters without a selector, reused by every search with these values."""
        key = (probes, ef_search)
        params = self._params.get(key)
        if params is None:
            if len(self._params) >= 16:
                self._params.clear()
            params = self._params[key] = self._search_params(probes, ef_search)
        return params

    def _search_params(self, probes: int | None, ef_search: int | None) -> Any:
        """Fresh faiss search parameters (the caller may attach a selector to them)."""
        if self.kind == "hnsw":
            ef = ef_search or self.default_ef(10)
            if ef < 1:
                raise InvalidQueryError(f"ef_search must be >= 1, got {ef}")
            params = faiss.SearchParametersHNSW(efSearch=ef)
        elif self.kind == "ivf":
            nprobe = probes or self.params.ivf_probes or max(8, self._index.nlist // 8)
            if nprobe < 1:
                raise InvalidQueryError(f"probes must be >= 1, got {nprobe}")
            params = faiss.SearchParametersIVF(nprobe=nprobe)
        else:
            params = faiss.SearchParameters()
        return params


def _one_by_one(index: Any, queries: F32, k: int, params: Any) -> float:
    """Median seconds of one-query searches of `index`, on one thread, as searches run."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        spent = []
        for i in range(len(queries)):
            started = time.perf_counter()
            index.search(queries[i : i + 1], k, params=params)
            spent.append(time.perf_counter() - started)
        return float(np.median(spent))
    finally:
        faiss.omp_set_num_threads(threads)


@dataclass(slots=True)
class _Build:
    """An index being built off the owner's thread, and the writes made since its snapshot
    (replayed onto it before it serves, on the owner's thread: faiss indexes are not shared)."""

    future: Future[VectorIndex]
    version: int
    """The table version its snapshot and `writes` reflect."""
    writes: list[tuple[list[int], tuple[Sequence[int], F32] | None]] = field(default_factory=list)


def _built(
    kind: IndexType, dim: int, params: IndexParams, labels: I64, vectors: F32
) -> VectorIndex:
    index = VectorIndex(kind, dim, params)
    index.build(labels, vectors)
    return index


class IndexSet:
    """The lazily built indexes of every (table, index type), kept in step with table writes.

    Each table has a version its owner bumps on every committed write. An index remembers the
    version it reflects: `apply` moves it forward incrementally when it was current before the
    write, and `get` rebuilds it from `load` when it is missing, stale (another writer changed
    the table) or due for a rebuild.

    Approximate indexes (ivf, hnsw) are built on a thread of their own: an HNSW graph over 100k
    x 384-d takes 20-60 s, which held the event loop (in memory) or every SQLite call (on the
    adapter's worker thread) for as long. Meanwhile `get` answers None, and the owner searches
    exactly (flat); writes made during the build are recorded and replayed onto the new index
    when it is installed, on the owner's thread. An index due for a rebuild keeps serving until
    its successor is ready. `pending` gives the build to wait for (the adapters' `build_index`).
    """

    def __init__(self, params: IndexParams | None = None) -> None:
        self.params = params or IndexParams()
        self._indexes: dict[tuple[str, IndexType], VectorIndex] = {}
        self._builds: dict[tuple[str, IndexType], _Build] = {}
        self._builder: ThreadPoolExecutor | None = None

    def get(
        self,
        table: str,
        kind: IndexType,
        dim: int,
        version: int,
        load: Callable[[], tuple[I64, F32]],
    ) -> VectorIndex | None:
        """The current index of `kind` over `table`; None while an approximate one is being
        built (a build `load()`'s snapshot starts when needed). A flat index is built here."""
        key = (table, kind)
        index = self._indexes.get(key)
        current = index is not None and index.version == version and index.dim == dim
        if current and not index.needs_rebuild:  # type: ignore[union-attr]
            return index
        if kind == "flat":
            labels, vectors = load()
            index = _built(kind, dim, self.params, labels, normalize(vectors))
            index.version = version
            self._indexes[key] = index
            return index
        build = self._builds.get(key)
        if build is not None and build.version != version:
            del self._builds[key]  # it missed a write (another writer's): start again
            build.future.cancel()
            build = None
        if build is not None and build.future.done():
            del self._builds[key]
            built = build.future.result()  # a failed build raises here, to the search
            for removed, added in build.writes:
                built.remove(removed)
                if added is not None and len(added[0]):
                    built.add(added[0], normalize(added[1]))
            built.version = version
            self._indexes[key] = built
            return built
        if build is None:
            labels, vectors = load()
            future = self._executor().submit(
                _built, kind, dim, self.params, labels, normalize(vectors)
            )
            self._builds[key] = _Build(future, version)
        return index if current else None

    def current(self, table: str, kind: IndexType, dim: int, version: int) -> VectorIndex | None:
        """The index of `kind` over `table` if it serves `version` as it is, changing nothing:
        built, current, and with no build to start or install (None: `get` has work to do)."""
        index = self.latest(table, kind)
        if index is None or index.version != version or index.dim != dim:
            return None
        return index

    def latest(self, table: str, kind: IndexType) -> VectorIndex | None:
        """The index of `kind` over `table` at whatever version it is, if it can serve as it
        is, changing nothing (no build to start or install); its owner checks the version."""
        key = (table, kind)
        index = self._indexes.get(key)
        if index is None:
            return None
        build = self._builds.get(key)
        if build is not None:
            return None if build.future.done() else index
        return None if index.needs_rebuild else index

    def pending(self, table: str, kind: IndexType) -> Future[VectorIndex] | None:
        """The build of `table`'s `kind` index in progress, if any (done: `get` installs it)."""
        build = self._builds.get((table, kind))
        return None if build is None else build.future

    def _executor(self) -> ThreadPoolExecutor:
        if self._builder is None:
            self._builder = ThreadPoolExecutor(1, thread_name_prefix="agenthost-index-build")
        return self._builder

    def apply(
        self,
        table: str,
        old_version: int,
        new_version: int,
        *,
        removed: Iterable[int] = (),
        added: tuple[Sequence[int], F32] | None = None,
    ) -> None:
        """Move the built indexes of `table` from `old_version` to `new_version`.

        `removed` labels are tombstoned, `added` (labels, raw vectors) inserted; an index that
        was not at `old_version` missed some other write and is dropped instead.
        """
        removed = list(removed)
        for kind in _INDEX_TYPES:
            key: tuple[str, IndexType] = (table, kind)  # type: ignore[assignment]
            build = self._builds.get(key)
            if build is not None:
                if build.version == old_version:
                    copied = None if added is None else (list(added[0]), added[1].copy())
                    build.writes.append((removed, copied))
                    build.version = new_version
                else:  # missed a write: its snapshot cannot be brought up to date
                    del self._builds[key]
                    build.future.cancel()
            index = self._indexes.get(key)
            if index is None:
                continue
            if index.version != old_version:
                del self._indexes[key]
                continue
            index.remove(removed)
            if added is not None and len(added[0]):
                index.add(added[0], normalize(added[1].copy()))
            index.version = new_version

    def has(self, table: str) -> bool:
        """Whether any index of `table` is built or building (writes must then be applied)."""
        return any(key[0] == table for key in (*self._indexes, *self._builds))

    def drop(self, table: str | None = None) -> None:
        """Forget the indexes of `table` (of every table when None), built or building."""
        for key in list(self._indexes):
            if table is None or key[0] == table:
                del self._indexes[key]
        for key in list(self._builds):
            if table is None or key[0] == table:
                self._builds.pop(key).future.cancel()

    def close(self) -> None:
        """Drop every index and stop the build thread (a build under way runs out unused)."""
        self.drop()
        if self._builder is not None:
            self._builder.shutdown(wait=False, cancel_futures=True)
            self._builder = None
