"""One faiss index over labelled vectors (`VectorIndex`): build, add, remove, search.

A `VectorIndex` maps caller labels (a SQLite rowid, an in-memory row number) to vectors and
answers cosine top-k queries, exactly (``flat``) or approximately (``ivf``, ``hnsw``). Vectors
are L2-normalised on the way in so inner product equals cosine similarity.

faiss ids are internal and sequential; a removed or replaced label is tombstoned (HNSW cannot
delete) and masked out with an `IDSelectorBitmap` at search time. When tombstones pass a quarter
of the index, or an IVF index has grown well past the data it was trained on, `needs_rebuild`
turns true and the owner rebuilds it from its table, the source of truth. A filtered search
whose allowed rows are few scores them exactly (`EXACT_FILTER_LIMIT`), and a filtered flat search
always does: both from the index's own stored vectors, with no copy where faiss keeps them flat.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from contracts.storage import IndexType, InvalidQueryError
from host.vectors import lazy
from host.vectors.arrays import F32, I64
from host.vectors.kinds import EXACT_FILTER_LIMIT, IndexParams, check_index_type
from host.vectors.tuning import (
    TUNE_GROWTH,
    TUNE_LADDER,
    TUNE_MIN_ROWS,
    TUNE_QUERIES,
    choose_ef,
)

__all__ = ["VectorIndex"]

_WHERE_SLACK = 8
"""`VectorIndex._where` holds labels up to this many times the live count (plus 1024): SQLite
rowids and in-memory row numbers run from 1 and 0 with few gaps; sparser labels use `_pos`."""


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
        self._where: I64 | None = np.empty(0, dtype=np.int64)
        """`_pos` as an array indexed by label (-1: none), so that a filter's thousands of
        labels map to internal ids in one numpy step; None when labels are too sparse for it."""
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
        lazy.omp_threads()
        self._ext = np.empty(0, dtype=np.int64)
        self._pos = {}
        self._dups = {}
        self._by_key = {}
        self._dead = 0
        self._live = None
        self._where = np.empty(0, dtype=np.int64)
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
        chosen = choose_ef(self._index, base, queries)
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
        if len(labels) == 1 and self.kind == "flat" and self._index is not None:
            self._add_row(labels[0], vectors)
            return
        lazy.omp_threads()
        self.remove(label for label in labels if label in self._pos)
        if self._index is None:
            self.build(np.asarray(labels, dtype=np.int64), vectors)
            return
        self._append(np.asarray(labels, dtype=np.int64), vectors)

    def _add_row(self, label: int, vectors: F32) -> None:
        """`add` of one row to a built flat index (a store's write of one memory, twice a
        message in a conversation): the same bookkeeping without the batch's arrays, and no
        OpenMP thread count set (a flat add is a copy)."""
        row = np.ascontiguousarray(vectors, dtype=np.float32)
        if row.shape != (1, self.dim):
            raise ValueError(f"a vector of shape {row.shape} added to a {self.dim}-d index")
        if label in self._pos:
            self.remove((label,))
        start = len(self._ext)
        buffer = self._ext.base
        if isinstance(buffer, np.ndarray) and buffer.ndim == 1 and len(buffer) > start:
            buffer[start] = label
            self._ext = buffer[: start + 1]
        else:
            self._grow_ext(np.array((label,), dtype=np.int64))
        self._live = None
        self._pos[label] = start
        where = self._where
        if where is not None and 0 <= label < len(where):
            where[label] = start
        else:
            self._map(np.array((label,), dtype=np.int64), np.array((start,), dtype=np.int64))
        self._index.add_c(1, lazy.faiss.swig_ptr(row))  # its id: ntotal == start

    def _append(self, labels: I64, vectors: F32) -> None:
        """Add `labels` (none of them present) with their `vectors` to the faiss index."""
        listed = labels.tolist()
        if len(listed) > 1 and len(set(listed)) != len(listed):
            raise ValueError("duplicate labels in one vector index write")
        if self.kind == "hnsw" and len(labels):
            fresh = self._alias_duplicates(labels, vectors)
            if not fresh.all():
                labels, vectors = labels[fresh], np.ascontiguousarray(vectors[fresh])
                listed = labels.tolist()
        start = len(self._ext)
        self._live = None
        self._grow_ext(labels)
        self._pos.update(zip(listed, range(start, start + len(listed)), strict=True))
        self._map(labels, np.arange(start, start + len(listed), dtype=np.int64), listed)
        if len(listed):
            self._index.add(vectors)  # faiss ids run on from ntotal == start

    def _grow_ext(self, labels: I64) -> None:
        """Append `labels` to `_ext`, a view of a buffer grown by doubling: a write of one row
        to a big index copies nothing (a concatenation copied the whole map each time)."""
        start, end = len(self._ext), len(self._ext) + len(labels)
        buffer = self._ext.base if isinstance(self._ext.base, np.ndarray) else None
        if buffer is None or buffer.ndim != 1 or len(buffer) < end:
            buffer = np.empty(max(64, 2 * end), dtype=np.int64)
            buffer[:start] = self._ext
        buffer[start:end] = labels
        self._ext = buffer[:end]

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
                    self._map(np.array([label], dtype=np.int64), np.array([other], dtype=np.int64))
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
            if self._where is not None:
                self._where[label] = -1
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

    def _map(self, labels: I64, ids: I64, listed: list[int] | None = None) -> None:
        """Record in `_where` that `labels` (`listed`: the same as a list, if at hand) are at
        internal `ids` (growing it as labels grow); labels beyond `_WHERE_SLACK` x the live
        count (or negative) turn it off for good."""
        where = self._where
        if where is None or not len(labels):
            return
        if listed is not None and len(listed) <= 16:  # a write's few rows: no numpy reductions
            top, bottom = max(listed), min(listed)
        else:
            top, bottom = int(labels.max()), int(labels.min())
        if bottom < 0 or top > _WHERE_SLACK * (len(self._pos) + 1024):
            self._where = None
            return
        if top >= len(where):
            grown = np.full(max(top + 1, 2 * len(where)), -1, dtype=np.int64)
            grown[: len(where)] = where
            self._where = where = grown
        where[labels] = ids

    def _ids_of(self, allowed: I64) -> tuple[I64, I64]:
        """The internal ids of the live labels among `allowed`, and those labels."""
        where = self._where
        if where is not None:
            inside = allowed[(allowed >= 0) & (allowed < len(where))]
            ids = where[inside]
            live = ids >= 0
            return ids[live], inside[live]
        pos = self._pos
        kept = [label for label in allowed.tolist() if label in pos]
        return (
            np.fromiter((pos[label] for label in kept), dtype=np.int64, count=len(kept)),
            np.asarray(kept, dtype=np.int64),
        )

    def _ids_of_any(self, sets: Sequence[I64]) -> tuple[I64, I64] | None:
        """`_ids_of` the labels in any of `sets`, ascending internal ids (None: not this way,
        `_union` the sets first). A mask over the internal ids, where a union of the labels
        took one over the label range, then their internal ids gathered and checked, each
        set's many labels passing through six numpy steps fewer; the ids in their stored
        order let `_scores` read a run of them as one block. Not with labels aliased to one
        node (HNSW duplicates: a node's id gives one of its labels)."""
        where = self._where
        if where is None or self._dups:
            return None
        mask = np.zeros(len(self._ext) + 1, dtype=bool)  # the last one: where's -1 (none)
        for labels in sets:
            if not len(labels):
                continue
            if int(labels.min()) < 0 or int(labels.max()) >= len(where):
                labels = labels[(labels >= 0) & (labels < len(where))]
            mask[where[labels]] = True
        mask[-1] = False
        ids = np.flatnonzero(mask)
        return ids, self._ext[ids]

    def search(
        self,
        query: F32,
        k: int,
        *,
        allowed: Iterable[int] | None = None,
        among: Sequence[I64] | None = None,
        probes: int | None = None,
        ef_search: int | None = None,
    ) -> tuple[list[int], list[float]]:
        """Labels and cosine scores of the top-`k` live vectors (among `allowed` labels if set:
        an int64 array is used as it is, a filter's label set; or among the labels of any of
        the int64 arrays `among`, several filters' sets searched at once)."""
        if self._index is None or not self._pos or k < 1:
            return [], []
        lazy.omp_threads(1)  # see lazy.BUILD_THREADS
        if among is not None:
            if len(among) == 1:
                allowed = among[0]
            else:
                picked = self._ids_of_any(among)
                if picked is None:
                    allowed = _union(among)
                elif self.kind == "flat":  # `_search_among`'s choice for a flat index
                    ids, kept = picked
                    return (
                        self._exact(query, ids, kept, min(k, len(kept)), ascending=True)
                        if len(kept)
                        else ([], [])
                    )
                else:
                    allowed = picked[1]
        exact = False
        target = self._index
        if self.kind == "hnsw" and not ef_search:
            if self.exact:  # the graph's own flat storage, scored exactly (_build_tuned)
                exact, target = True, lazy.faiss.downcast_index(self._index.storage)
            else:
                ef_search = self.default_ef(k)
        if allowed is not None:
            return self._search_among(query, k, allowed, target, exact, probes, ef_search)
        take = min(k, len(self._pos))
        bitmap = self._live_bitmap() if self._dead else None
        scores, found = self._faiss_search(target, query, take, bitmap, exact, probes, ef_search)
        if not self._dead and not self._dups and found[-1] >= 0:
            # the usual case (no tombstone, no alias, `take` found): labels as they are
            return self._ext[found].tolist(), scores.tolist()
        return self._labels_of(found, scores, take, None)

    def _search_among(
        self,
        query: F32,
        k: int,
        allowed: Iterable[int],
        target: Any,
        exact: bool,
        probes: int | None,
        ef_search: int | None,
    ) -> tuple[list[int], list[float]]:
        """`search` among `allowed` labels: scored exactly when the index is flat, when they
        are few (see `EXACT_FILTER_LIMIT`) or when the ANN search with a selector came up
        short."""
        if isinstance(allowed, np.ndarray):
            labels = allowed.astype(np.int64, copy=False).reshape(-1)
        else:
            labels = np.fromiter(allowed, dtype=np.int64)
        ids, kept = self._ids_of(labels)
        if not len(kept):
            return [], []
        take = min(k, len(kept))
        approximate = self.kind != "flat"
        if approximate:
            self._shared_params(probes, ef_search)  # the same argument errors either way
        if not approximate or len(ids) <= EXACT_FILTER_LIMIT or len(ids) * 10 <= len(self._pos):
            return self._exact(query, ids, kept, take)
        mask = np.zeros(len(self._ext), dtype=bool)
        mask[ids] = True
        bitmap = np.packbits(mask, bitorder="little")
        scores, found = self._faiss_search(target, query, take, bitmap, exact, probes, ef_search)
        out_labels, out_scores = self._labels_of(found, scores, take, kept.tolist())
        if approximate and len(out_labels) < take:
            return self._exact(query, ids, kept, take)  # the filtered ANN search came up short
        return out_labels, out_scores

    def _faiss_search(
        self,
        target: Any,
        query: F32,
        take: int,
        bitmap: npt.NDArray[np.uint8] | None,
        exact: bool,
        probes: int | None,
        ef_search: int | None,
    ) -> tuple[F32, I64]:
        """Scores and internal ids (-1: none) of one faiss search, masked by `bitmap` if set."""
        if bitmap is None:
            params = None if exact else self._shared_params(probes, ef_search)
            scores, ids = target.search(query, take, params=params)
            return scores[0], ids[0]
        faiss = lazy.faiss
        params = faiss.SearchParameters() if exact else self._search_params(probes, ef_search)
        # The selector reads `bitmap` during the search: both stay referenced until then.
        selector = faiss.IDSelectorBitmap(len(self._ext), faiss.swig_ptr(bitmap))
        params.sel = selector
        scores, ids = target.search(query, take, params=params)
        del selector
        return scores[0], ids[0]

    def _labels_of(
        self, found: I64, scores: F32, take: int, allowed: list[int] | None
    ) -> tuple[list[int], list[float]]:
        """The live labels of faiss result ids `found` and their `scores` (no result (-1) and
        tombstones dropped, every label of a node holding duplicates)."""
        hit = found >= 0
        labels = self._ext[found[hit]]
        live = labels >= 0
        if self._dups:
            return self._expand(found[hit][live], scores[hit][live], take, allowed)
        return labels[live].tolist(), scores[hit][live].tolist()

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
        self, query: F32, ids: I64, labels: I64, take: int, *, ascending: bool = False
    ) -> tuple[list[int], list[float]]:
        """Exact top-`take` of the live `labels` (internal ids `ids`), from the stored vectors:
        scored in place where faiss keeps them as one flat array (flat, HNSW), else copied out
        (IVF)."""
        names = labels
        scores = self._scores(query, np.ascontiguousarray(ids, dtype=np.int64), ascending)
        if take < len(scores):
            top = np.argpartition(-scores, take - 1)[:take]
            names, scores = names[top], scores[top]
        order = np.lexsort((names, -scores))
        return names[order].tolist(), scores[order].astype(float).tolist()

    def _scores(self, query: F32, ids: I64, ascending: bool = False) -> F32:
        """Inner products of `query` with the stored vectors at internal `ids` (all valid):
        read as one block when `ids` are a run (ascending, consecutive: a conversation's
        rows in a store written one conversation at a time), ~15% faster than gathered one
        by one (the same products; at 16 dimensions and more, the same bits too: below, faiss
        may round the last bit differently, so a tie or a threshold at the boundary can fall
        either way). `ascending`: `ids` are known to ascend
        strictly, so that their ends tell a run."""
        faiss = lazy.faiss
        storage = self._index
        if self.kind == "hnsw":
            storage = faiss.downcast_index(storage.storage)
        if not isinstance(storage, faiss.IndexFlat):
            return self._index.reconstruct_batch(ids) @ query.reshape(-1)  # type: ignore[no-any-return]
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        scores = np.empty(len(ids), dtype=np.float32)
        first, count = int(ids[0]), len(ids)
        if (
            count > 1
            and int(ids[-1]) - first + 1 == count
            and (ascending or bool((np.diff(ids) == 1).all()))
        ):
            block = faiss.rev_swig_ptr(storage.get_xb(), storage.ntotal * self.dim)
            block = block[first * self.dim : (first + count) * self.dim]
            faiss.fvec_inner_products_ny(
                faiss.swig_ptr(scores), faiss.swig_ptr(q), faiss.swig_ptr(block), self.dim, count
            )
            return scores
        faiss.fvec_inner_products_by_idx(
            faiss.swig_ptr(scores),
            faiss.swig_ptr(q),
            storage.get_xb(),
            faiss.swig_ptr(ids),
            self.dim,
            1,
            len(ids),
        )
        return scores

    def _live_bitmap(self) -> npt.NDArray[np.uint8]:
        """The faiss bitmap of live internal ids, cached until the next add or remove."""
        if self._live is None:
            self._live = np.packbits(self._ext >= 0, bitorder="little")
        return self._live

    def _new_index(self, vectors: F32) -> Any:
        metric = lazy.faiss.METRIC_INNER_PRODUCT
        if self.kind == "flat":
            return lazy.faiss.IndexFlatIP(self.dim)
        if self.kind == "hnsw":
            index = lazy.faiss.IndexHNSWFlat(self.dim, self.params.hnsw_m, metric)
            index.hnsw.efConstruction = self.params.hnsw_ef_construction
            return index
        n = len(vectors)
        lists = self.params.ivf_lists or int(math.sqrt(n))
        # faiss wants ~39 training points per list; fewer lists than that just degrade to flat.
        lists = max(1, min(lists, n // 39 if n >= 39 else 1))
        quantizer = lazy.faiss.IndexFlatIP(self.dim)
        index = lazy.faiss.IndexIVFFlat(quantizer, self.dim, lists, metric)
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
            params = lazy.faiss.SearchParametersHNSW(efSearch=ef)
        elif self.kind == "ivf":
            nprobe = probes or self.params.ivf_probes or max(8, self._index.nlist // 8)
            if nprobe < 1:
                raise InvalidQueryError(f"probes must be >= 1, got {nprobe}")
            params = lazy.faiss.SearchParametersIVF(nprobe=nprobe)
        else:
            params = lazy.faiss.SearchParameters()
        return params


def _union(sets: Sequence[I64]) -> I64:
    """The labels in any of `sets` (ascending, each once): a mask over the label range where it
    is dense enough (SQLite seqs mostly are), else a sort."""
    sets = [labels for labels in sets if len(labels)]
    if not sets:
        return np.empty(0, dtype=np.int64)
    bounds = [(int(labels.min()), int(labels.max())) for labels in sets]
    top = max(high for _, high in bounds)
    if top > 16 * sum(len(labels) for labels in sets) + 65536 or min(bounds)[0] < 0:
        return np.unique(np.concatenate(sets))
    mask = np.zeros(top + 1, dtype=bool)
    for labels in sets:
        mask[labels] = True
    return np.flatnonzero(mask)
