"""faiss, imported at its first use, and the OpenMP thread count builds run with.

Own module so every part of the vector indexes shares one lazy import (~60 ms kept off start-up)
and one `BUILD_THREADS`, read as ``lazy.faiss`` / ``lazy.BUILD_THREADS`` (rebound at first use).
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["BUILD_THREADS", "faiss", "omp_threads"]

BUILD_THREADS: int = 0
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
        global faiss, BUILD_THREADS
        import faiss as module

        BUILD_THREADS = module.omp_get_max_threads()  # before any thread sets its own count
        faiss = module  # later uses go straight to the module
        return getattr(module, name)


faiss: Any = _LazyFaiss()


_threads = threading.local()


def omp_threads(count: int | None = None) -> None:
    """Set the calling thread's OpenMP thread count for faiss (None: `BUILD_THREADS`, read
    once faiss is imported), unless it is set so already: a search sets 1 each time, and each
    faiss call lets go of the GIL (another thread may take it until it lets go in turn)."""
    set_threads = faiss.omp_set_num_threads  # imports faiss (and sets BUILD_THREADS) at first
    wanted = BUILD_THREADS if count is None else count
    if getattr(_threads, "count", None) != wanted:
        set_threads(wanted)
        _threads.count = wanted
