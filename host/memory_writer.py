"""Saving one agent's memories: embed the text (when enabled and missing), store the memory,
emit ``MEMORY_CREATED``.

Vectors of another model than the store's (a fallback answered the embedding) are left out:
the memory is stored without one rather than mixed with the table's model (`host.embeddings`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol, get_args
from uuid import UUID

from contracts.events import MEMORY_CREATED
from contracts.memory import Memory
from contracts.models import (
    TEXT_EMBEDDING,
    EmbeddingKind,
    EmbeddingParams,
    EmbeddingResult,
    ModelRuntime,
)
from contracts.storage import DatabaseAdapter
from contracts.vector import Vector
from host.embeddings import EmbeddingModelChangedError, EmbeddingSpace
from host.events import EventBus
from host.pydantic_slots import constructed
from host.turn_payloads import memory_payload

if TYPE_CHECKING:
    from loguru import Logger

__all__ = ["MemorySettings", "MemoryWriter"]


class MemorySettings(Protocol):
    """The setting saving reads (config ``agents``)."""

    @property
    def embed(self) -> bool: ...


_KINDS: Final = frozenset(get_args(EmbeddingKind))
_GIVEN: Final = frozenset({"text", "kind"})
_EMBEDDING: Final = frozenset({"embedding"})
assert not Memory.__private_attributes__ and Memory.model_config.get("extra") in (None, "ignore")


def _params(text: str, kind: EmbeddingKind) -> EmbeddingParams:
    """``EmbeddingParams(text=text, kind=kind)``, unvalidated when the text is a `str` and the
    kind one of the kinds (a memory's text, the runtime's kind: ~1.5 us a save)."""
    if type(text) is not str or kind not in _KINDS:
        return EmbeddingParams(text=text, kind=kind)
    return constructed(EmbeddingParams, {"text": text, "kind": kind, "model": None}, set(_GIVEN))


def _embedded(memory: Memory, vector: Vector) -> Memory:
    """``memory.model_copy(update={"embedding": vector})`` (a `Memory` has no extra fields and
    no private ones) without pydantic's generic copy (~2 us a save)."""
    if type(memory) is not Memory:
        return memory.model_copy(update={"embedding": vector})
    values = dict(memory.__dict__)  # every field (a lazily decoded memory's decoded now)
    values["embedding"] = vector
    return constructed(Memory, values, memory.model_fields_set | _EMBEDDING)


class MemoryWriter:
    """Writes the memories of the agent `agent_id` to `database`."""

    def __init__(
        self,
        *,
        agent_id: UUID,
        database: DatabaseAdapter,
        models: ModelRuntime,
        events: EventBus,
        settings: MemorySettings,
        embeddings: EmbeddingSpace | None,
        log: Logger,
    ) -> None:
        self._agent_id = agent_id
        self._database = database
        self._models = models
        self._events = events
        self._settings = settings
        self.embeddings = embeddings
        """The embedding model the store's vectors are of (None: not checked, a bare rig)."""
        self._log = log

    async def save(self, memory: Memory, kind: EmbeddingKind = "passage") -> Memory:
        """Embed (when enabled and missing; as a `kind` text) and store `memory`; emit
        ``MEMORY_CREATED``. Returns the memory as stored."""
        if self._settings.embed and memory.embedding is None and memory.content.text:
            embedded = await self._models.use_model(
                TEXT_EMBEDDING, _params(memory.content.text, kind)
            )
            if await self._storable(embedded, memory.table_name):
                memory = _embedded(memory, embedded.vector)
        await self._database.create_memory(memory)
        await self._events.emit(MEMORY_CREATED, memory_payload(self._agent_id, memory))
        return memory

    async def _storable(self, embedded: EmbeddingResult, table: str) -> bool:
        space = self.embeddings
        if space is None:
            return True
        if not space.accept(embedded):
            return False
        try:
            await space.ensure(self._database, table)
        except EmbeddingModelChangedError as exc:
            self._log.error("{}; memory stored without its embedding", exc)
            return False
        return True
