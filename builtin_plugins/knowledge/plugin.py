"""The ``knowledge`` plugin: the `KNOWLEDGE` service and a ``knowledge`` provider.

``agenthost knowledge add PATH...`` (and ``POST /knowledge``) add documents; the character's
``knowledge`` field (texts, files, directories) is added when the agent starts. For each
message, the provider puts the chunks most similar to it, with their source, into the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.agent import CachePolicy, Provider, ProviderResult, State
from contracts.knowledge import KNOWLEDGE, KnowledgeBase
from contracts.memory import Memory
from contracts.models import TEXT_EMBEDDING, EmbeddingParams, ModelRuntime
from contracts.plugin import Manifest, Plugin
from contracts.services import Service
from contracts.storage import DatabaseAdapter

from .base import KnowledgeStore

__all__ = ["DEFAULT_THRESHOLDS", "KnowledgePlugin", "KnowledgeSettings"]

DEFAULT_THRESHOLDS = {
    "multilingual-e5-small-q4": 0.78,
    "all-MiniLM-L6-v2": 0.25,
    "hashed-ngrams": 0.1,
}
"""Cosine similarity below which a chunk is left out, per embedding model."""


class KnowledgeSettings(BaseModel):
    """Config section ``plugins.knowledge``."""

    model_config = ConfigDict(extra="forbid")

    chunk_size: int = Field(default=1000, ge=100, le=100_000)
    """Characters per chunk (at most)."""
    overlap: int = Field(default=150, ge=0)
    """Characters a chunk repeats of the previous one."""
    batch_size: int = Field(default=8, ge=1, le=4096)
    """Chunks embedded per model call: each call must end within `models.timeout` (60 s), and
    e5 takes about 1 s per 1000-character chunk on 2 busy cores."""
    max_file_bytes: int = Field(default=20_000_000, ge=1)
    """Bigger files are skipped (named, with the reason)."""
    k: int = Field(default=3, ge=1, le=50)
    """Chunks put into the prompt (at most)."""
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    """Minimum cosine similarity; None: the embedding model's default."""
    position: int = -30

    @model_validator(mode="after")
    def _overlap_below_size(self) -> KnowledgeSettings:
        if self.overlap >= self.chunk_size:
            raise ValueError(f"overlap ({self.overlap}) must be below chunk_size")
        return self


class KnowledgePlugin(Plugin):
    manifest: ClassVar[Manifest] = Manifest(
        name="knowledge",
        description="Knowledge: documents chunked, embedded, searched; relevant chunks in prompts",
        settings=KnowledgeSettings,
        provides=(KNOWLEDGE,),
    )

    def __init__(
        self,
        database: DatabaseAdapter,
        models: ModelRuntime,
        settings: KnowledgeSettings | None = None,
    ) -> None:
        self.settings = s = settings or KnowledgeSettings()
        self.model_runtime = models
        self.store = KnowledgeStore(
            database,
            models,
            chunk_size=s.chunk_size,
            overlap=s.overlap,
            batch_size=s.batch_size,
            max_bytes=s.max_file_bytes,
        )
        self._threshold = s.threshold

    def services(self) -> Sequence[Service[Any]]:
        return (Service(KNOWLEDGE, self._service),)

    def _service(self) -> KnowledgeBase:
        return self.store

    def providers(self) -> Sequence[Provider]:
        return (
            Provider(
                name="knowledge",
                get=self.relevant,
                description="the knowledge chunks most similar to the message",
                position=self.settings.position,
                cache=CachePolicy(ttl=300.0, scope="message"),
            ),
        )

    async def relevant(self, message: Memory, state: State) -> ProviderResult:
        if not message.content.text.strip():
            return ProviderResult()
        vector = message.embedding
        if vector is None or self._threshold is None:
            result = await self.model_runtime.use_model(
                TEXT_EMBEDDING, EmbeddingParams(text=message.content.text, kind="query")
            )
            vector = vector if vector is not None else result.vector
            if self._threshold is None:
                self._threshold = DEFAULT_THRESHOLDS.get(result.model or "", 0.0)
        chunks = await self.store.search_vector(
            vector, message.agent_id, self.settings.k, self._threshold
        )
        if not chunks:
            return ProviderResult()
        parts = [f"[{c.source}, part {c.position + 1} of {c.of}]\n{c.text}" for c in chunks]
        return ProviderResult(
            text="# Knowledge\n" + "\n\n".join(parts),
            values={"knowledge_count": len(chunks)},
            data={"chunks": [c.model_dump() for c in chunks]},
        )
