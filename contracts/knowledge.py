"""Knowledge: documents split into chunks, embedded and searched (the ``knowledge`` plugin).

The `KNOWLEDGE` service adds files and texts (each document replaces its earlier version, an
unchanged one is skipped by content hash), lists and removes them, and searches their chunks.
Knowledge belongs to one agent, or is shared by every agent (``agent_id=None``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from contracts.tokens import Token

__all__ = [
    "KNOWLEDGE",
    "AddOutcome",
    "Chunk",
    "Document",
    "KnowledgeBase",
    "KnowledgeProgress",
]

KnowledgeProgress = Callable[[str, int, int], None]
"""Called with (document source, chunks embedded so far, chunks of the document)."""


class Document(BaseModel):
    """A document in the knowledge base."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    source: str
    """The file's absolute path, or the name a text was added under."""
    agent_id: UUID | None
    """None: shared by every agent."""
    sha256: str
    chunks: int
    characters: int
    added_at: str


class AddOutcome(BaseModel):
    """What adding one document did."""

    model_config = ConfigDict(frozen=True)

    source: str
    status: Literal["added", "replaced", "unchanged", "skipped"]
    chunks: int = 0
    reason: str | None = None
    """Why it was skipped (binary, encrypted PDF, too big, not UTF-8, ...)."""


class Chunk(BaseModel):
    """A found piece of a document."""

    model_config = ConfigDict(frozen=True)

    source: str
    position: int
    """Its place in the document, from 0."""
    of: int
    """How many chunks the document has."""
    text: str
    score: float


@runtime_checkable
class KnowledgeBase(Protocol):
    async def add_paths(
        self,
        paths: Sequence[Path],
        agent_id: UUID | None = None,
        progress: KnowledgeProgress | None = None,
    ) -> list[AddOutcome]:
        """Add files (directories recursively); a bad file is skipped with its reason."""
        ...

    async def add_text(
        self, text: str, source: str, agent_id: UUID | None = None
    ) -> AddOutcome: ...

    async def documents(self, agent_id: UUID | None = None) -> list[Document]:
        """The documents of `agent_id` (None: the shared ones)."""
        ...

    async def remove(self, source: str, agent_id: UUID | None = None) -> bool: ...

    async def search(self, text: str, agent_id: UUID | None = None, k: int = 5) -> list[Chunk]:
        """The `k` chunks most similar to `text` among the agent's and the shared documents."""
        ...


KNOWLEDGE: Token[KnowledgeBase] = Token("knowledge", KnowledgeBase)
