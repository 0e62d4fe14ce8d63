"""The ``recall`` plugin: a ``relevant_memories`` provider searching the agent's memories.

For each message it searches the agent's memories by similarity to the message (the vector the
runtime embedded it with when it saved it: no second embedding) within the configured scopes:
``room`` (this conversation), ``entity`` (what the speaker said anywhere), ``agent`` (all the
agent remembers). It keeps the best `k` above the threshold, leaves out what the recent
conversation provider already shows (the room's last ``agents.history`` messages) and the
message itself, and puts them, oldest first, under ``# Relevant memories``. Its result is
cached per message.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.agent import CachePolicy, Provider, ProviderResult, State
from contracts.config import HostConfig
from contracts.memory import DEFAULT_TABLE, Memory, MemoryQuery
from contracts.models import TEXT_EMBEDDING, EmbeddingParams, ModelRuntime
from contracts.plugin import Manifest, Plugin
from contracts.storage import DatabaseAdapter, SearchParams, search_any
from contracts.vector import Vector

__all__ = ["DEFAULT_THRESHOLDS", "RecallPlugin", "RecallSettings"]

Scope = Literal["room", "entity", "agent"]
DEFAULT_SCOPES: tuple[Scope, ...] = ("room", "entity")

DEFAULT_THRESHOLDS = {
    "multilingual-e5-small-q4": 0.8,
    "all-MiniLM-L6-v2": 0.3,
    "hashed-ngrams": 0.15,
}
"""Cosine similarity below which a memory is not relevant, per embedding model (their scales
differ: E5 puts unrelated sentences near 0.75); calibrated on bench/retrieval.py's data."""


class RecallSettings(BaseModel):
    """Config section ``plugins.recall``."""

    model_config = ConfigDict(extra="forbid")

    scopes: list[Scope] = Field(default_factory=lambda: list(DEFAULT_SCOPES), min_length=1)
    """Where to search: this room, the speaker's messages anywhere, everything of the agent."""
    k: int = Field(default=5, ge=1, le=100)
    """At most this many memories in the prompt."""
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    """Minimum cosine similarity; None: the embedding model's default (`DEFAULT_THRESHOLDS`)."""
    tables: list[str] = Field(default_factory=lambda: [DEFAULT_TABLE], min_length=1)
    """Memory tables searched."""
    position: int = -20
    """Where its text goes in the prompt (the recent conversation is at -10)."""


class RecallPlugin(Plugin):
    """Relevant memories for each message, by vector search in the memory store."""

    manifest: ClassVar[Manifest] = Manifest(
        name="recall",
        description="Relevant memories: the agent's memories most similar to each message",
        settings=RecallSettings,
    )

    def __init__(
        self,
        database: DatabaseAdapter,
        models: ModelRuntime,
        settings: RecallSettings | None = None,
        config: HostConfig | None = None,
    ) -> None:
        self.database = database
        self.model_runtime = models
        self.settings = settings or RecallSettings()
        self.history = config.agents.history if config is not None else 10
        self._threshold: float | None = self.settings.threshold
        self._made: dict[tuple[UUID, UUID, UUID], tuple[MemoryQuery, list[MemoryQuery]]] = {}

    def providers(self) -> Sequence[Provider]:
        return (
            Provider(
                name="relevant_memories",
                get=self.relevant,
                description="the agent's memories most similar to the message",
                position=self.settings.position,
                cache=CachePolicy(ttl=300.0, scope="message"),
            ),
        )

    async def _query(self, message: Memory) -> tuple[Vector, float]:
        """The message's vector (as stored, else embedded now) and the threshold."""
        vector = message.embedding
        model: str | None = None
        if vector is None or self._threshold is None:
            result = await self.model_runtime.use_model(
                TEXT_EMBEDDING, EmbeddingParams(text=message.content.text, kind="query")
            )
            vector = vector if vector is not None else result.vector
            model = result.model
        if self._threshold is None:
            self._threshold = DEFAULT_THRESHOLDS.get(model or "", 0.0)
        return vector, self._threshold

    def _queries(self, message: Memory) -> tuple[MemoryQuery, list[MemoryQuery]]:
        """The query of what the recent conversation shows, and the scopes' filters (made once
        per agent, room and speaker: a conversation's messages reuse them)."""
        key = (message.agent_id, message.room_id, message.entity_id)
        made = self._made.get(key)
        if made is None:
            if len(self._made) >= 1024:
                self._made.clear()
            made = self._made[key] = (self._shown(message), self._filters(message))
        return made

    def _shown(self, message: Memory) -> MemoryQuery:
        return MemoryQuery(
            agent_id=message.agent_id,
            room_id=message.room_id,
            table_name=DEFAULT_TABLE,
            limit=self.history + 1,
            with_embeddings=False,  # only their ids are used
        )

    def _filters(self, message: Memory) -> list[MemoryQuery]:
        queries = []
        for scope in dict.fromkeys(self.settings.scopes):
            room: UUID | None = message.room_id if scope == "room" else None
            entity: UUID | None = message.entity_id if scope == "entity" else None
            for table in self.settings.tables:
                queries.append(
                    MemoryQuery(
                        agent_id=message.agent_id, room_id=room, entity_id=entity, table_name=table
                    )
                )
        return queries

    async def relevant(self, message: Memory, state: State) -> ProviderResult:
        if not message.content.text.strip():
            return ProviderResult()
        vector, threshold = await self._query(message)
        shown, filters = self._queries(message)
        # the k best in any scope beyond the message and the recent conversation (`shown`):
        # one search where the store can (the SQLite store scores the scopes' rows together
        # and leaves the conversation out in the statement reading the hits), else the
        # conversation read first and one search a scope (`search_each`, which also copes
        # with a store that ignores `exclude`)
        found = await search_any(
            self.database,
            vector,
            filters,
            SearchParams(
                k=self.settings.k,
                threshold=threshold,
                with_embeddings=False,
                exclude=frozenset((message.id,)),
            ),
            leave_out=shown,
        )
        top = [(memory, score) for memory, score in found if memory.content.text.strip()]
        if not top:
            return ProviderResult()
        top.sort(key=lambda hit: (hit[0].created_at, hit[0].id))  # `Memory.cursor`'s order
        name = str(state.values.get("agent_name") or "agent")
        lines = [
            f"- {name if m.entity_id == message.agent_id else 'user'}"
            f" ({_day(m.created_at)}): {m.content.text}"
            for m, _ in top
        ]
        return ProviderResult(
            text="# Relevant memories\n" + "\n".join(lines),
            values={"relevant_memory_count": len(top)},
            data={"memories": [{"id": str(m.id), "score": s} for m, s in top]},
        )


def _day(when: datetime) -> str:
    """``when`` as ``%Y-%m-%d`` (a fifth of strftime's cost; strftime for years below 1000, which
    it does not pad alike on every platform)."""
    if when.year < 1000:
        return when.strftime("%Y-%m-%d")
    return f"{when.year}-{when.month:02d}-{when.day:02d}"
