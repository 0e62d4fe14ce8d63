"""Which embedding model made which vectors: one record per memory table, checked at start.

Vectors of two models are not comparable (even at the same dimension), so a table must hold
one model's vectors only. Each store keeps, next to its memories, a record per memory table
(a memory in the reserved table ``_embedding_models``, so every backend, third-party ones
included, keeps it with no code of its own) saying which model and dimension its vectors have.

- `EmbeddingSpace.check` (at agent start) compares the records with the model that answers
  ``TEXT_EMBEDDING`` now; a different model or dimension is an `EmbeddingModelChangedError`
  naming the table, both models and dimensions, and the way out: ``agenthost memory reembed``.
- `EmbeddingSpace.accept` (on each write) keeps vectors of another model out of the store: when
  the registry fell back to another handler (the model failed), the memory is stored without
  its embedding rather than mixed in.
- `reembed` (host/reembed.py) moves a table to the current model, resumably.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from uuid import NAMESPACE_URL, UUID, uuid5

from loguru import logger

from contracts.memory import DEFAULT_TABLE, Content, Memory, MemoryQuery, MemoryUpdate
from contracts.models import (
    MODELS,
    TEXT_EMBEDDING,
    EmbeddingParams,
    EmbeddingResult,
    ModelError,
    ModelRuntime,
)
from contracts.storage import DATABASE, DatabaseAdapter, DuplicateMemoryError
from host.config import ConfigError
from host.di import Container

__all__ = [
    "CHECKED_TABLES",
    "RECORD_TABLE",
    "EmbeddingModel",
    "EmbeddingModelChangedError",
    "EmbeddingSpace",
    "Mismatch",
    "TableRecord",
    "check_embeddings",
    "probe",
    "read_records",
    "space_for",
    "write_record",
]

CHECKED_TABLES = (DEFAULT_TABLE, "knowledge")
"""Tables checked (and recorded) at start even before their first vector: the conversation and
the knowledge plugin's chunks."""
RECORD_TABLE = "_embedding_models"
"""The reserved memory table holding one record per memory table."""
REEMBED_HINT = "run `agenthost memory reembed` (with the host stopped) to re-embed them"

_NIL = UUID(int=0)
_NAMESPACE = uuid5(NAMESPACE_URL, "https://agenthost.dev/embedding-models")
_log = logger.bind(component="embeddings")


@dataclass(frozen=True, slots=True)
class EmbeddingModel:
    """A model as its vectors know it: its name and dimension."""

    name: str
    dimension: int

    def __str__(self) -> str:
        return f"{self.name} ({self.dimension}-d)"


@dataclass(frozen=True, slots=True)
class TableRecord:
    """What a memory table's vectors are: made by `model`; ``reembedding`` while a
    re-embedding to `model` is unfinished (some rows have no vector yet)."""

    table: str
    model: EmbeddingModel
    state: Literal["ready", "reembedding"] = "ready"


@dataclass(frozen=True, slots=True)
class Mismatch:
    table: str
    stored: EmbeddingModel | None
    """None: vectors of an unrecorded model (a store written before the records)."""
    stored_dimension: int | None
    current: EmbeddingModel
    unfinished: bool = False

    def __str__(self) -> str:
        if self.unfinished:
            return (
                f"memory table {self.table!r}: re-embedding to {self.current} is unfinished"
                f" (it continues where it stopped)"
            )
        stored = str(self.stored) if self.stored is not None else "an unrecorded model"
        if self.stored is None and self.stored_dimension is not None:
            stored += f" ({self.stored_dimension}-d)"
        return (
            f"memory table {self.table!r} holds vectors of {stored}; the embedding model is now"
            f" {self.current}"
        )


class EmbeddingModelChangedError(ConfigError):
    """The stored vectors are of another embedding model than the one configured now: the
    configuration and the data dir disagree, so the command line exits 2 like any config
    error."""

    def __init__(self, mismatches: Iterable[Mismatch]) -> None:
        self.mismatches = list(mismatches)
        lines = "; ".join(str(m) for m in self.mismatches)
        super().__init__(
            f"the embedding model changed: {lines}. Vectors of two models cannot be compared:"
            f" {REEMBED_HINT}, or go back to the previous model (plugins.disabled, models.pins)"
        )


async def check_embeddings(container: Container) -> EmbeddingSpace | None:
    """The host's `EmbeddingSpace`, checked against its store (`EmbeddingModelChangedError`).

    When the embedding model does not answer at start (its server is down), the space is the
    model the store's records name, so that a fallback's vectors are kept out until it is back;
    None when no model answers and nothing is recorded."""
    return await space_for(await container.aresolve(DATABASE), await container.aresolve(MODELS))


async def space_for(db: DatabaseAdapter, models: ModelRuntime) -> EmbeddingSpace | None:
    """`check_embeddings` of a store and a model runtime."""
    try:
        space = await EmbeddingSpace.open(models)
    except ModelError as exc:
        stored = {record.model for record in (await read_records(db)).values()}
        if len(stored) == 1:
            model = stored.pop()
            _log.warning(
                "the embedding model did not answer at start ({}); the store's vectors are of"
                " {}: only its vectors are stored meanwhile",
                exc,
                model,
            )
            return EmbeddingSpace(model)
        _log.warning("no embedding model answers ({}): vectors are not checked", exc)
        return None
    await space.check(db)
    return space


def _record_id(table: str) -> UUID:
    return uuid5(_NAMESPACE, table)


def _as_record(memory: Memory) -> TableRecord | None:
    extra = memory.content.model_extra or {}
    try:
        model = EmbeddingModel(str(extra["model"]), int(extra["dimension"]))
        if extra.get("state") == "reembedding":
            return TableRecord(str(extra["table"]), model, "reembedding")
        return TableRecord(str(extra["table"]), model)
    except (KeyError, TypeError, ValueError):
        return None


async def read_records(db: DatabaseAdapter) -> dict[str, TableRecord]:
    """Every memory table's record, by table name."""
    rows = await db.get_memories(MemoryQuery(table_name=RECORD_TABLE, order="asc"))
    records = (_as_record(row) for row in rows)
    return {r.table: r for r in records if r is not None}


async def write_record(db: DatabaseAdapter, record: TableRecord) -> None:
    """Create or replace `record` (one write: an update, or the create of a new record)."""
    memory_id = _record_id(record.table)
    if await db.update_memory(MemoryUpdate(id=memory_id, content=_record_content(record))):
        return
    if not await create_record(db, record):  # another process created it meanwhile
        await db.update_memory(MemoryUpdate(id=memory_id, content=_record_content(record)))


async def create_record(db: DatabaseAdapter, record: TableRecord) -> bool:
    """Create `record`; False when it exists already (several processes of a cluster, or
    several hosts on one store, start at once: the first one records the table)."""
    try:
        await db.create_memory(
            Memory(
                id=_record_id(record.table),
                agent_id=_NIL,
                entity_id=_NIL,
                room_id=_NIL,
                table_name=RECORD_TABLE,
                content=_record_content(record),
            )
        )
    except DuplicateMemoryError:
        return False
    return True


def _record_content(record: TableRecord) -> Content:
    return Content(
        text="",
        table=record.table,
        model=record.model.name,
        dimension=record.model.dimension,
        state=record.state,
    )


async def probe(models: ModelRuntime) -> EmbeddingModel:
    """The model answering ``TEXT_EMBEDDING`` now (one tiny call: its name and dimension).

    Asked of the first provider only (a registry's `providers` order): a fallback answering
    for a model that is down is not the configured model."""
    order = getattr(models, "providers", None)
    first = order(TEXT_EMBEDDING)[0] if callable(order) and order(TEXT_EMBEDDING) else None
    params = EmbeddingParams(text="dimension probe")
    result = await models.use_model(TEXT_EMBEDDING, params, provider=first)
    return EmbeddingModel(_name(result), len(result.vector))


def _name(result: EmbeddingResult) -> str:
    return result.model or "unnamed"


class EmbeddingSpace:
    """The current embedding model and the tables known to hold its vectors (one per host)."""

    def __init__(self, current: EmbeddingModel) -> None:
        self.current = current
        self._recorded: set[str] = set()
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, models: ModelRuntime) -> EmbeddingSpace:
        return cls(await probe(models))

    async def check(self, db: DatabaseAdapter, tables: Iterable[str] = CHECKED_TABLES) -> None:
        """`EmbeddingModelChangedError` unless every memory table with vectors holds the
        current model's. `tables` without a record are recorded as the current model's: new
        ones, and those from before the records whose dimension matches (nothing else can be
        known of them)."""
        records = await read_records(db)
        mismatches: list[Mismatch] = []
        for table in sorted(set(tables) | set(records)):
            record = records.get(table)
            dimension = await db.embedding_dimension(table)
            if record is None:
                if dimension is not None and dimension != self.current.dimension:
                    mismatches.append(Mismatch(table, None, dimension, self.current))
                    continue
                if await create_record(db, TableRecord(table, self.current)):
                    if dimension is not None:
                        _log.info("memory table {!r}: vectors recorded as {}", table, self.current)
                    self._recorded.add(table)
                    continue
                # another process (a cluster's, starting at once) recorded it first: compare
                record = (await read_records(db)).get(table)
                if record is None:
                    continue
            if record.model != self.current or (
                dimension is not None and dimension != self.current.dimension
            ):
                mismatches.append(Mismatch(table, record.model, dimension, self.current))
                continue
            elif record.state == "reembedding":
                mismatches.append(Mismatch(table, None, None, self.current, unfinished=True))
                continue
            self._recorded.add(table)
        if mismatches:
            raise EmbeddingModelChangedError(mismatches)

    def accept(self, result: EmbeddingResult) -> bool:
        """Whether `result`'s vectors are the current model's (else they must not be stored:
        a fallback model answered)."""
        ok = _name(result) == self.current.name and all(
            len(v) == self.current.dimension for v in result.vectors
        )
        if not ok:
            _log.warning(
                "embeddings from {} ({}-d) instead of {}: stored without them, never mixed in",
                _name(result),
                len(result.vectors[0]) if result.vectors else 0,
                self.current,
            )
        return ok

    async def ensure(self, db: DatabaseAdapter, table: str) -> None:
        """Record the current model for `table` before its first vector (once per table)."""
        if table in self._recorded or table == RECORD_TABLE:
            return
        async with self._lock:
            if table not in self._recorded:
                await self._ensure(db, table)

    async def _ensure(self, db: DatabaseAdapter, table: str) -> None:
        record = (await read_records(db)).get(table)
        if record is None:
            if await create_record(db, TableRecord(table, self.current)):
                self._recorded.add(table)
                return
            record = (await read_records(db)).get(table)  # recorded by another process first
            if record is None:  # and removed again since (a re-embed): record it anew
                await write_record(db, TableRecord(table, self.current))
                self._recorded.add(table)
                return
        if record.model != self.current or record.state != "ready":
            raise EmbeddingModelChangedError(
                [Mismatch(table, record.model, None, self.current, record.state != "ready")]
            )
        self._recorded.add(table)
