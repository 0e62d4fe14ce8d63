"""`IndexSet`: the vector indexes of every (table, index type), built off the owner's thread
and kept in step with the table's writes (replayed onto a build that was under way).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from contracts.storage import IndexType
from host.vectors.arrays import F32, I64, normalize
from host.vectors.index import VectorIndex
from host.vectors.kinds import INDEX_TYPES, IndexParams

__all__ = ["IndexSet"]


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
        normalized: F32 | None = None  # `added`'s vectors normalised, once for every index
        for kind in INDEX_TYPES:
            key: tuple[str, IndexType] = (table, kind)
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
            if removed:
                index.remove(removed)
            if added is not None and len(added[0]):
                if normalized is None:
                    normalized = normalize(added[1].copy())
                index.add(added[0], normalized)
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
