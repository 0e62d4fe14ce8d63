"""`KnowledgeStore`: documents as chunks in the memory store's ``knowledge`` table.

Each chunk is a memory of the table ``knowledge`` (its room is the document's id, its agent an
id derived from the owner's, `library`, or the nil id for shared knowledge) with its source and
position in its content; each document has a record in ``knowledge_documents`` (source,
SHA-256, chunk count). Adding a document embeds all its chunks first, then, in one transaction
(`DatabaseAdapter.replace_memories`), deletes the previous version's chunks and record and writes
the new ones: a reader finds the old version or the new one, never both or neither, and an
interrupted add leaves the old version whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from loguru import logger

from contracts.knowledge import AddOutcome, Chunk, Document, KnowledgeProgress
from contracts.memory import Content, Memory, MemoryQuery, utc_now
from contracts.models import TEXT_EMBEDDING, EmbeddingParams, ModelCallError, ModelRuntime
from contracts.storage import DatabaseAdapter, SearchParams, search_any
from contracts.vector import Vector

from .chunking import chunk_text
from .readers import SUFFIXES, UnreadableError, read_document

__all__ = ["DOCUMENTS_TABLE", "SHARED", "TABLE", "KnowledgeStore"]

TABLE = "knowledge"
DOCUMENTS_TABLE = "knowledge_documents"
SHARED = UUID(int=0)
"""The owner of shared knowledge (every agent's)."""

_NAMESPACE = uuid5(NAMESPACE_URL, "https://agenthost.dev/knowledge")
_log = logger.bind(plugin="knowledge")


def library(agent_id: UUID | None) -> UUID:
    """The ``agent_id`` the chunks and records of `agent_id`'s documents are stored under: not
    the agent's own id, so its documents never read as its conversations (rooms, history)."""
    return SHARED if agent_id is None else uuid5(agent_id, "knowledge")


def document_id(source: str, agent_id: UUID | None) -> UUID:
    return uuid5(_NAMESPACE, f"{agent_id or SHARED}\n{source}")


class KnowledgeStore:
    """The `KnowledgeBase` over a memory store and the embedding model."""

    def __init__(
        self,
        database: DatabaseAdapter,
        models: ModelRuntime,
        *,
        chunk_size: int = 1000,
        overlap: int = 150,
        batch_size: int = 8,
        max_bytes: int = 20_000_000,
    ) -> None:
        self.database = database
        self.models = models
        self.chunk_size = chunk_size
        self.overlap = overlap
        self.batch_size = batch_size
        self.max_bytes = max_bytes

    # -- adding ---------------------------------------------------------------------------------

    async def add_paths(
        self,
        paths: Sequence[Path],
        agent_id: UUID | None = None,
        progress: KnowledgeProgress | None = None,
    ) -> list[AddOutcome]:
        outcomes = []
        for path, problem in _expand(paths):
            source = str(path.resolve()) if problem is None else str(path)
            if problem is None:
                try:
                    text, raw = read_document(path, self.max_bytes)
                except UnreadableError as exc:
                    problem = str(exc)
            if problem is not None:
                _log.warning("knowledge: {} skipped: {}", source, problem)
                outcomes.append(AddOutcome(source=source, status="skipped", reason=problem))
                continue
            digest = hashlib.sha256(raw).hexdigest()
            outcomes.append(await self._ingest(source, text, digest, agent_id, progress))
        return outcomes

    async def add_text(self, text: str, source: str, agent_id: UUID | None = None) -> AddOutcome:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        return await self._ingest(source, text, digest, agent_id, None)

    async def _ingest(
        self,
        source: str,
        text: str,
        digest: str,
        agent_id: UUID | None,
        progress: KnowledgeProgress | None,
    ) -> AddOutcome:
        doc_id = document_id(source, agent_id)
        previous = await self.database.get_memory(doc_id)
        extra = previous.content.model_extra or {} if previous is not None else {}
        if previous is not None and extra.get("sha256") == digest:
            return AddOutcome(source=source, status="unchanged", chunks=int(extra["chunks"]))
        pieces = chunk_text(text, self.chunk_size, self.overlap)
        if not pieces:
            return AddOutcome(source=source, status="skipped", reason="no text in it")
        owner = library(agent_id)
        old = await self.database.get_memories(
            MemoryQuery(table_name=TABLE, room_id=doc_id, with_embeddings=False)
        )
        vectors = await self._embed(source, pieces, progress)
        now = utc_now()
        chunks = [
            Memory(
                agent_id=owner,
                entity_id=SHARED,
                room_id=doc_id,
                table_name=TABLE,
                content=Content(
                    text=piece, source=source, position=i, of=len(pieces), sha256=digest
                ),
                embedding=vector,
                created_at=now + timedelta(microseconds=i),
            )
            for i, (piece, vector) in enumerate(zip(pieces, vectors, strict=True))
        ]
        content = Content(
            source=source,
            sha256=digest,
            chunks=len(pieces),
            characters=len(text),
            added_at=now.isoformat(),
        )
        record = Memory(
            id=doc_id,
            agent_id=owner,
            entity_id=SHARED,
            room_id=doc_id,
            table_name=DOCUMENTS_TABLE,
            content=content,
            created_at=now if previous is None else previous.created_at,  # keeps its place
        )
        stale = [*(m.id for m in old), doc_id]
        await self.database.replace_memories(stale, [*chunks, record])
        outcome = AddOutcome(
            source=source, status="added" if previous is None else "replaced", chunks=len(pieces)
        )
        _log.info("knowledge: {} {} ({} chunks)", source, outcome.status, len(pieces))
        return outcome

    async def _embed(
        self, source: str, pieces: list[str], progress: KnowledgeProgress | None
    ) -> list[Vector]:
        vectors: list[Vector] = []
        model: str | None = None
        for start in range(0, len(pieces), self.batch_size):
            batch = tuple(pieces[start : start + self.batch_size])
            result = await self.models.use_model(
                TEXT_EMBEDDING, EmbeddingParams(text=batch, kind="passage")
            )
            if model is not None and result.model != model:  # a fallback answered mid-document
                raise ModelCallError(
                    f"embedding {source}: {result.model} answered after {model}; add it again",
                    provider=result.model or "unknown",
                    retryable=True,
                )
            model = result.model
            vectors += result.vectors
            if progress is not None:
                progress(source, len(vectors), len(pieces))
        return vectors

    # -- reading --------------------------------------------------------------------------------

    async def documents(self, agent_id: UUID | None = None) -> list[Document]:
        rows = await self.database.get_memories(
            MemoryQuery(
                table_name=DOCUMENTS_TABLE,
                agent_id=library(agent_id),
                order="asc",
                with_embeddings=False,
            )
        )
        return [_document(row, agent_id) for row in rows]

    async def remove(self, source: str, agent_id: UUID | None = None) -> bool:
        doc_id = document_id(source, agent_id)
        chunks = await self.database.get_memories(
            MemoryQuery(table_name=TABLE, room_id=doc_id, with_embeddings=False)
        )
        return await self.database.delete_memories_batch([doc_id, *(m.id for m in chunks)]) > 0

    async def search(self, text: str, agent_id: UUID | None = None, k: int = 5) -> list[Chunk]:
        result = await self.models.use_model(
            TEXT_EMBEDDING, EmbeddingParams(text=text, kind="query")
        )
        return await self.search_vector(result.vector, agent_id, k)

    async def search_vector(
        self,
        vector: Sequence[float],
        agent_id: UUID | None = None,
        k: int = 5,
        threshold: float | None = None,
    ) -> list[Chunk]:
        """Like `search`, with the query's vector already embedded (the provider's case)."""
        if await self.database.embedding_dimension(TABLE) is None:
            return []
        owners = dict.fromkeys((SHARED, library(agent_id)))
        hits = await search_any(  # shared and own documents: one search where the store can
            self.database,
            vector,
            [MemoryQuery(table_name=TABLE, agent_id=owner) for owner in owners],
            SearchParams(k=k, threshold=threshold, with_embeddings=False),
        )
        return [_chunk(memory, score) for memory, score in hits]


def _document(row: Memory, agent_id: UUID | None) -> Document:
    extra: dict[str, Any] = row.content.model_extra or {}
    return Document(
        id=row.id,
        source=str(extra.get("source", "")),
        agent_id=agent_id,
        sha256=str(extra.get("sha256", "")),
        chunks=int(extra.get("chunks", 0)),
        characters=int(extra.get("characters", 0)),
        added_at=str(extra.get("added_at", "")),
    )


def _chunk(memory: Memory, score: float) -> Chunk:
    extra: dict[str, Any] = memory.content.model_extra or {}
    return Chunk(
        source=str(extra.get("source", "")),
        position=int(extra.get("position", 0)),
        of=int(extra.get("of", 1)),
        text=memory.content.text,
        score=score,
    )


def _expand(paths: Sequence[Path]) -> Iterator[tuple[Path, str | None]]:
    """Each file to read (directories recursively: the known suffixes, hidden ones left out),
    or a path with the reason it is not one."""
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                relative = found.relative_to(path).parts
                if (
                    found.is_file()
                    and found.suffix.lower() in SUFFIXES
                    and not any(p.startswith(".") for p in relative)
                ):
                    yield found, None
        elif path.is_file():
            yield path, None
        else:
            yield path, "no such file or directory"
