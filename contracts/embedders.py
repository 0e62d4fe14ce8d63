"""A local embedding engine behind a TEXT_EMBEDDING handler: what every plugin that runs a model
in-process (``e5``, ``minilm``, yours) needs around the model itself.

The model loads on the first call, not at start-up: a host where another handler answers never
pays for it. Calls run on a worker thread, one at a time (an engine uses every CPU thread it has;
two at once only thrash), in batches of ``batch_size`` texts. A model that cannot be loaded is a
retryable `ModelCallError` naming the plugin, so the registry falls back to the next handler.

A plugin gives two functions: ``load(threads)`` returns the engine, ``encode(engine, texts,
query)`` returns one row per text::

    embedder = LocalEmbedder(
        provider="mine",
        model_name="my-model-v1",
        load=lambda threads: MyModel(num_threads=threads),
        encode=lambda model, texts, query: model.encode(texts),
    )
    ModelHandler(TEXT_EMBEDDING, embedder.embed, priority=-50)
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from contracts.models import EmbeddingParams, EmbeddingResult, ModelCallError, Usage
from contracts.vector import Vector

__all__ = ["LocalEmbedder", "default_threads"]

Engine = TypeVar("Engine")


def default_threads(configured: int | None = None) -> int:
    """The CPU threads an engine gets: `configured`, else ``OMP_NUM_THREADS`` when set, else the
    number of CPUs up to 4 (more gains little on a small model and starves the host)."""
    if configured is not None:
        return configured
    variable = os.environ.get("OMP_NUM_THREADS", "")
    if variable.isdigit() and int(variable) > 0:
        return int(variable)
    return max(1, min(4, os.cpu_count() or 1))


@dataclass
class LocalEmbedder(Generic[Engine]):
    """An in-process embedding model: loaded on first use, called on a worker thread, one call
    at a time, in batches."""

    provider: str
    """The plugin's name, in errors."""
    model_name: str
    """What the vectors are recorded as made by (`EmbeddingResult.model`)."""
    load: Callable[[int], Engine]
    """Threads -> the engine (runs once, on the worker thread, under the lock)."""
    encode: Callable[[Engine, list[str], bool], npt.ArrayLike]
    """(engine, a batch of texts, whether they are queries) -> one row per text."""
    threads: int | None = None
    """CPU threads of the engine; None: `default_threads`."""
    batch_size: int = 32
    """Texts per `encode` call: a big ingestion is cut into batches of this size."""
    _engine: Engine | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _loaded(self) -> Engine:
        if self._engine is None:
            try:
                self._engine = self.load(default_threads(self.threads))
            except (ImportError, OSError) as exc:
                raise ModelCallError(
                    f"the {self.provider} model cannot be loaded: {exc}",
                    provider=self.provider,
                    retryable=True,
                ) from exc
        return self._engine

    def encode_all(self, texts: list[str], query: bool) -> npt.NDArray[np.float32]:
        """Every text's row, batch by batch (on the calling thread: `embed` runs it on a
        worker). The model loads even for no text, so a broken install shows at once."""
        with self._lock:
            engine = self._loaded()
            parts = [
                np.asarray(self.encode(engine, batch, query), dtype=np.float32).reshape(
                    len(batch), -1
                )
                for batch in (
                    texts[start : start + self.batch_size]
                    for start in range(0, len(texts), self.batch_size)
                )
            ]
        if not parts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    async def embed(self, params: EmbeddingParams) -> EmbeddingResult:
        """The TEXT_EMBEDDING handler: `params.texts` embedded on a worker thread."""
        texts = params.texts
        matrix = await asyncio.to_thread(self.encode_all, texts, params.kind == "query")
        return EmbeddingResult(
            vectors=Vector.rows(matrix),
            usage=Usage(input_tokens=sum(len(text.split()) for text in texts)),
            model=self.model_name,
        )

    def close(self) -> None:
        """Drop the engine (a plugin's teardown); the next call loads it again."""
        with self._lock:
            self._engine = None

    @property
    def loaded(self) -> Any:
        """The engine if it has been loaded, else None."""
        return self._engine
