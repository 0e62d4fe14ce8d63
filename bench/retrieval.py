"""Retrieval benchmark: how well each embedding model finds memories and documents, what the
relevant-memories provider costs per message, and how fast documents are ingested.

1. recall: 40 memories and 40 questions asking for them in other words (bench/data/
   retrieval.json), and 9 questions over 3 documents (bench/data/docs, chunked as the
   knowledge plugin chunks them, 400 characters): recall@1 and @5 of the memory, @1 and @2 of a
   chunk of the right document (7 chunks: @5 would find every document), for the hashed
   default and each installed extra (memories embedded as passages, questions as queries).
2. provider cost: `process_message` per message with the e5 extra, with and without the
   ``recall`` plugin (its search reuses the message's vector), after 40 memories were stored.
3. ingestion: a Markdown document of --size bytes added through the knowledge plugin's store
   (SQLite): chunks/s and the share of the time spent in the embedding model.

    .venv/bin/python bench/retrieval.py                 # 1 MB ingestion per model
    .venv/bin/python bench/retrieval.py --size 100000   # 100 kB: e5 takes 0.3-2 s a chunk
    .venv/bin/python bench/retrieval.py --only ingestion --models hashed e5   # not minilm
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builtin_plugins import e5, minilm
from builtin_plugins.e5 import E5Plugin
from builtin_plugins.eliza import ElizaPlugin
from builtin_plugins.knowledge import KnowledgeStore, chunk_text
from builtin_plugins.minilm import MiniLMPlugin
from builtin_plugins.sqlite import SqliteAdapter
from contracts.config import HostConfig
from contracts.models import TEXT_EMBEDDING, EmbeddingParams
from host.app import Host
from host.config import LoadedConfig
from host.logs import configure_logging
from host.models import ModelRegistry

console = Console(width=140)
DATA = Path(__file__).parent / "data"


def registry(plugin: Any) -> ModelRegistry:
    models = ModelRegistry()
    for handler in plugin.models():
        models.register(handler, owner=plugin.manifest.name)
    return models


def installed() -> list[tuple[str, Any]]:
    models: list[tuple[str, Any]] = [("hashed n-grams (default)", ElizaPlugin())]
    if e5.plugin.available():
        models.append(("e5: multilingual-e5-small q4 [embeddings]", E5Plugin()))
    if minilm.plugin.available():
        models.append(("minilm: all-MiniLM-L6-v2 [embeddings-torch]", MiniLMPlugin()))
    return models


async def embed(models: ModelRegistry, texts: list[str], kind: str) -> np.ndarray[Any, Any]:
    result = await models.use_model(
        TEXT_EMBEDDING,
        EmbeddingParams(text=tuple(texts), kind=kind),  # type: ignore[arg-type]
    )
    return np.array(result.vectors)


def recall(scores: np.ndarray[Any, Any], right: list[set[int]], k: int) -> float:
    top = np.argsort(-scores, axis=1)[:, :k]
    return float(np.mean([bool(set(row) & want) for row, want in zip(top, right, strict=True)]))


async def recall_table() -> None:
    data = json.loads((DATA / "retrieval.json").read_text())
    memories = [m for m, _ in data["pairs"]]
    questions = [q for _, q in data["pairs"]]
    chunks: list[str] = []
    owner: list[str] = []
    for path in sorted((DATA / "docs").glob("*.md")):
        for piece in chunk_text(path.read_text(), size=400, overlap=60):
            chunks.append(piece)
            owner.append(path.name)
    doc_questions = [q for q, _ in data["documents"]]
    doc_right = [{i for i, o in enumerate(owner) if o == doc} for _, doc in data["documents"]]
    table = Table(title=f"recall: {len(memories)} memories / {len(chunks)} document chunks")
    for column in ("model", "memories r@1", "memories r@5", "documents r@1", "documents r@2"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, plugin in installed():
        models = registry(plugin)
        passages = await embed(models, memories, "passage")
        queries = await embed(models, questions, "query")
        scores = queries @ passages.T
        right = [{i} for i in range(len(memories))]
        doc_scores = (
            await embed(models, doc_questions, "query") @ (await embed(models, chunks, "passage")).T
        )
        table.add_row(
            name,
            f"{recall(scores, right, 1):.3f}",
            f"{recall(scores, right, 5):.3f}",
            f"{recall(doc_scores, doc_right, 1):.3f}",
            f"{recall(doc_scores, doc_right, 2):.3f}",
        )
    console.print(table)


async def per_message(plugins: list[str], directory: Path, rounds: int) -> list[float]:
    config = HostConfig.model_validate(
        {
            "data_dir": directory,
            "agents": {"characters_dir": directory / "none"},
            "plugins": {"enabled": plugins},
        }
    )
    host = Host(LoadedConfig(config, None))
    await host.start()
    try:
        assert host.agents is not None
        runtime = host.agents.get("Eliza")
        data = json.loads((DATA / "retrieval.json").read_text())
        user = uuid4()
        for memory, _ in data["pairs"]:
            room = uuid4()
            await runtime.process_message(runtime.new_message(memory, room_id=room, entity_id=user))
        totals = []
        room = uuid4()
        for i in range(rounds):
            question = data["pairs"][i % len(data["pairs"])][1]
            reply = await runtime.process_message(
                runtime.new_message(question, room_id=room, entity_id=user)
            )
            totals.append(reply.timings["total"])
        return totals
    finally:
        await host.stop()


async def provider_cost(rounds: int) -> None:
    if not e5.plugin.available():
        console.print("provider cost: skipped (the embeddings extra is not installed)")
        return
    table = Table(title=f"process_message with e5, {rounds} messages after 40 memories (median)")
    for column in ("pipeline", "ms per message", "x without recall"):
        table.add_column(column, justify="left" if column == "pipeline" else "right")
    with tempfile.TemporaryDirectory() as tmp:
        # interleaved rounds: the machine's load drifts, pairs of runs share it
        base: list[float] = []
        with_recall: list[float] = []
        for r in range(2):
            base += await per_message(["sqlite", "eliza", "e5"], Path(tmp) / f"a{r}", rounds)
            with_recall += await per_message(
                ["sqlite", "eliza", "e5", "recall"], Path(tmp) / f"b{r}", rounds
            )
    b, w = statistics.median(base), statistics.median(with_recall)
    table.add_row("sqlite + eliza + e5 (baseline)", f"{b * 1000:.1f}", "1.00")
    table.add_row("+ recall (relevant memories)", f"{w * 1000:.1f}", f"{w / b:.2f}")
    console.print(table)


class TimedModels:
    """The registry, timing the embedding calls (the share of ingestion they take)."""

    def __init__(self, inner: ModelRegistry) -> None:
        self.inner = inner
        self.seconds = 0.0

    async def use_model(self, model_type: Any, params: Any, *, provider: Any = None) -> Any:
        t = time.perf_counter()
        try:
            return await self.inner.use_model(model_type, params, provider=provider)
        finally:
            self.seconds += time.perf_counter() - t

    def stream_model(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.stream_model(*args, **kwargs)


def markdown(size: int) -> str:
    docs = [p.read_text() for p in sorted((DATA / "docs").glob("*.md"))]
    parts: list[str] = []
    length = i = 0
    while length < size:
        text = docs[i % len(docs)].replace("# ", f"# Part {i}: ", 1)
        parts.append(text)
        length += len(text) + 2
        i += 1
    return "\n\n".join(parts)[:size]


async def ingestion(size: int, models_wanted: set[str] | None = None) -> None:
    text = markdown(size)
    table = Table(title=f"knowledge ingestion of {len(text):,} characters of Markdown (SQLite)")
    for column in ("model", "chunks", "seconds", "chunks/s", "embedding share"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, plugin in installed():
        if models_wanted is not None and name.split(":")[0].split()[0] not in models_wanted:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "big.md"
            path.write_text(text)
            db = await SqliteAdapter.open(Path(tmp) / "k.sqlite3")
            models = TimedModels(registry(plugin))
            store = KnowledgeStore(db, models)  # type: ignore[arg-type]
            t = time.perf_counter()
            outcome = (await store.add_paths([path]))[0]
            elapsed = time.perf_counter() - t
            await db.close()
        table.add_row(
            name,
            str(outcome.chunks),
            f"{elapsed:.2f}",
            f"{outcome.chunks / elapsed:.1f}",
            f"{models.seconds / elapsed:.1%}",
        )
    console.print(table)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=1_000_000, help="ingested bytes")
    parser.add_argument("--rounds", type=int, default=40, help="messages per provider run")
    parser.add_argument("--only", nargs="*", choices=("recall", "provider", "ingestion"))
    parser.add_argument(
        "--models",
        nargs="*",
        choices=("hashed", "e5", "minilm"),
        help="ingest with these models only (default: every installed one)",
    )
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    configure_logging(HostConfig().logging.model_copy(update={"level": "WARNING"}))
    load = os.getloadavg()[0]
    console.print(f"load average {load:.1f} on {os.cpu_count()} CPUs")
    only = set(args.only or ("recall", "provider", "ingestion"))
    if "recall" in only:
        await recall_table()
    if "provider" in only:
        await provider_cost(args.rounds)
    if "ingestion" in only:
        await ingestion(args.size, set(args.models) if args.models else None)


if __name__ == "__main__":
    asyncio.run(main())
