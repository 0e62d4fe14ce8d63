"""Re-embed a store's memories with the current embedding model, resumably.

Per memory table: if its record (host/embeddings.py) is not already "re-embedding to the
current model", every old vector is removed and the record says so, in that order; then the
memories without a vector are embedded, a batch at a time, oldest first. An interrupted run
leaves the record saying "re-embedding" and the rows done with their new vector: the next run
goes on with the rest. Old and new vectors are never in the table together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from contracts.memory import DEFAULT_TABLE, Memory, MemoryQuery, MemoryUpdate
from contracts.models import (
    TEXT_EMBEDDING,
    EmbeddingKind,
    EmbeddingParams,
    ModelCallError,
    ModelRuntime,
)
from contracts.storage import DatabaseAdapter
from host.embeddings import (
    CHECKED_TABLES,
    EmbeddingModel,
    EmbeddingSpace,
    TableRecord,
    probe,
    read_records,
    write_record,
)
from host.memory import MemoryManager

__all__ = ["Progress", "TableResult", "reembed"]

Progress = Callable[[str, int, int], None]
"""Called with (table, memories gone through in this table so far, memories in the table)."""


@dataclass(frozen=True, slots=True)
class TableResult:
    table: str
    embedded: int
    """Memories given a vector by this run."""
    skipped: bool
    """The table already held the current model's vectors only."""
    resumed: bool
    """A run interrupted earlier was continued."""


async def reembed(
    db: DatabaseAdapter,
    models: ModelRuntime,
    *,
    tables: Iterable[str] | None = None,
    batch_size: int = 64,
    progress: Progress | None = None,
) -> tuple[EmbeddingModel, list[TableResult]]:
    """Move `tables` (default: every recorded table, ``messages`` and ``knowledge``) to the
    current model."""
    current = await probe(models)
    records = await read_records(db)
    names = sorted(set(tables) if tables is not None else {*CHECKED_TABLES, *records})
    results = []
    for table in names:
        results.append(
            await _table(db, models, current, records.get(table), table, batch_size, progress)
        )
    await EmbeddingSpace(current).check(db, names)  # the proof: consistent now
    return current, results


async def _table(
    db: DatabaseAdapter,
    models: ModelRuntime,
    current: EmbeddingModel,
    record: TableRecord | None,
    table: str,
    batch_size: int,
    progress: Progress | None,
) -> TableResult:
    dimension = await db.embedding_dimension(table)
    total = await db.count_memories(MemoryQuery(table_name=table))
    if (
        record is not None
        and record.model == current
        and record.state == "ready"
        and dimension in (None, current.dimension)
    ):
        if progress is not None:
            progress(table, total, total)
        return TableResult(table, 0, skipped=True, resumed=False)
    resumed = record is not None and record.model == current and record.state == "reembedding"
    if not resumed:
        await db.reset_embeddings(table)
        await write_record(db, TableRecord(table, current, "reembedding"))
    done = embedded = 0
    query = MemoryQuery(table_name=table, order="asc")
    async for page in MemoryManager(db).get_memories_batch(query, batch_size):
        todo = [m for m in page if m.embedding is None and m.content.text]
        # as the runtime embedded them: what others said to the agent as queries (the
        # incoming message's vector is the search's), the rest as passages
        for kind in ("query", "passage"):
            rows = [m for m in todo if _kind(table, m) == kind]
            if not rows:
                continue
            params = EmbeddingParams(text=tuple(m.content.text for m in rows), kind=kind)
            result = await models.use_model(TEXT_EMBEDDING, params)
            if not EmbeddingSpace(current).accept(result):
                raise ModelCallError(
                    f"re-embedding {table!r}: the embedding model changed during the run"
                    f" ({result.model} answered instead of {current.name}); run it again",
                    provider=result.model or "unknown",
                    retryable=True,
                )
            pairs = zip(rows, result.vectors, strict=True)
            await db.update_memories_batch([MemoryUpdate(id=m.id, embedding=v) for m, v in pairs])
            embedded += len(rows)
        done += len(page)
        if progress is not None:
            progress(table, done, total)
    await write_record(db, TableRecord(table, current))
    return TableResult(table, embedded, skipped=False, resumed=resumed)


def _kind(table: str, memory: Memory) -> EmbeddingKind:
    """How the runtime embedded `memory`: a message to the agent as a query, else a passage."""
    if table == DEFAULT_TABLE and memory.entity_id != memory.agent_id:
        return "query"
    return "passage"
