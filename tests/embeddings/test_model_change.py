"""Changing the embedding model on an existing store: caught at start (table, both models and
dimensions, the way out), never a 500 per message; `agenthost memory reembed` moves the store to
the new model, with progress, resumably; vectors of two models never share a table."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from typer.testing import CliRunner

from builtin_plugins.eliza import ElizaPlugin, ElizaSettings
from contracts.memory import Memory, MemoryQuery
from contracts.models import (
    TEXT_EMBEDDING,
    EmbeddingParams,
    EmbeddingResult,
    ModelCallError,
    ModelHandler,
)
from contracts.storage import DATABASE, DatabaseAdapter, SearchParams
from host.app import Host
from host.cli import app
from host.config import LoadedConfig
from host.embeddings import (
    RECORD_TABLE,
    EmbeddingModel,
    EmbeddingModelChangedError,
    EmbeddingSpace,
    read_records,
    space_for,
)
from host.models import ModelRegistry
from host.reembed import reembed
from host.testing import offline_config


def _config(tmp_path: Path, dimension: int) -> LoadedConfig:
    config = offline_config(
        tmp_path / "data", http={"port": 0}, plugins={"eliza": {"dimension": dimension}}
    )
    return LoadedConfig(config, None)


async def _talk(config: LoadedConfig, *texts: str) -> None:
    async with Host(config) as host:
        assert host.agents is not None
        runtime = host.agents.get("eliza")
        room = uuid4()
        for text in texts:
            await runtime.process_message(runtime.new_message(text, room_id=room, entity_id=room))


async def test_another_dimension_is_reported_at_start_and_reembed_fixes_it(
    tmp_path: Path,
) -> None:
    await _talk(_config(tmp_path, 384), "I keep my bicycle in the shed", "My sister lives abroad")
    with pytest.raises(EmbeddingModelChangedError) as caught:
        await _talk(_config(tmp_path, 64), "hello again")
    message = str(caught.value)
    assert "memory table 'messages'" in message
    assert "hashed-ngrams (384-d)" in message and "hashed-ngrams (64-d)" in message
    assert "agenthost memory reembed" in message

    seen: list[tuple[str, int, int]] = []
    host = Host(_config(tmp_path, 64))
    await host.start(agents=False)  # plugins only: no agents, no check
    db = await host.container.aresolve(DATABASE)
    try:
        current, results = await reembed(
            db, host.models, batch_size=1, progress=lambda *a: seen.append(a)
        )
        assert str(current) == "hashed-ngrams (64-d)"
        assert [(r.table, r.embedded, r.skipped) for r in results] == [
            ("knowledge", 0, False),  # recorded at start, empty: moved to the new model too
            ("messages", 4, False),
        ]
        assert [s for s in seen if s[0] == "messages"] == [("messages", i, 4) for i in (1, 2, 3, 4)]
        assert await db.embedding_dimension("messages") == 64
        again = (await reembed(db, host.models))[1]
        assert all(r.skipped for r in again)  # nothing left to do
    finally:
        await host.stop()
    await _talk(_config(tmp_path, 64), "hello again")  # starts and answers now


def test_the_cli_reports_the_change_and_reembeds_with_progress(tmp_path: Path) -> None:
    asyncio.run(_talk(_config(tmp_path, 384), "Bring an umbrella", "The cat sleeps"))
    config = tmp_path / "agenthost.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\nagents: {{characters_dir: {tmp_path / 'none'}}}\n"
        "plugins: {enabled: [sqlite, eliza], eliza: {dimension: 32}}\n"
    )
    runner = CliRunner()
    chat = runner.invoke(app, ["--config", str(config), "chat"], input="hi\n/quit\n")
    assert chat.exit_code == 2
    assert "memory table 'messages' holds vectors of hashed-ngrams (384-d)" in chat.stderr
    assert "Traceback" not in chat.stderr + chat.stdout
    done = runner.invoke(app, ["--config", str(config), "memory", "reembed"])
    assert done.exit_code == 0, done.stderr
    assert "table messages" in done.stdout  # the progress bar's line
    assert "messages: 4 memories embedded with hashed-ngrams (32-d)" in done.stdout
    chat = runner.invoke(app, ["--config", str(config), "chat"], input="hi\n/quit\n")
    assert chat.exit_code == 0, chat.stderr


class _Failing:
    """A model runtime over `inner` whose embedding calls fail after `calls` of them."""

    def __init__(self, inner: ModelRegistry, calls: int) -> None:
        self.inner = inner
        self.calls = calls

    async def use_model(self, model_type: Any, params: Any, *, provider: Any = None) -> Any:
        if model_type is TEXT_EMBEDDING and not isinstance(params.text, str):
            if self.calls == 0:
                raise KeyboardInterrupt  # Ctrl-C in the middle of the run
            self.calls -= 1
        return await self.inner.use_model(model_type, params, provider=provider)

    def stream_model(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.stream_model(*args, **kwargs)


def _models(dimension: int) -> ModelRegistry:
    registry = ModelRegistry()
    for handler in ElizaPlugin(ElizaSettings(dimension=dimension)).models():
        registry.register(handler, owner="eliza")
    return registry


async def _fill(db: DatabaseAdapter, models: ModelRegistry, count: int) -> None:
    space = await EmbeddingSpace.open(models)
    await space.check(db)
    agent = uuid4()
    texts = tuple(f"memory number {i}" for i in range(count))
    result = await models.use_model(TEXT_EMBEDDING, EmbeddingParams(text=texts))
    await space.ensure(db, "messages")
    await db.create_memories_batch(
        [
            Memory(agent_id=agent, entity_id=agent, room_id=agent, content={"text": t}, embedding=v)
            for t, v in zip(texts, result.vectors, strict=True)
        ]
    )


async def test_an_interrupted_reembed_is_refused_at_start_and_resumes(
    memory_store: DatabaseAdapter,
) -> None:
    await _fill(memory_store, _models(48), 10)
    new = _models(16)
    with pytest.raises(KeyboardInterrupt):
        await reembed(memory_store, _Failing(new, 2), batch_size=3)  # type: ignore[arg-type]
    # half done: 6 rows have 16-d vectors, none has an old one (never two models in a table)
    rows = await memory_store.get_memories(MemoryQuery(table_name="messages"))
    assert sorted(len(r.embedding or ()) for r in rows) == [0] * 4 + [16] * 6
    with pytest.raises(EmbeddingModelChangedError, match="re-embedding to hashed-ngrams"):
        await (await EmbeddingSpace.open(new)).check(memory_store)
    _, results = await reembed(memory_store, new, batch_size=3)
    messages = next(r for r in results if r.table == "messages")
    assert (messages.resumed, messages.embedded) == (True, 4)
    await (await EmbeddingSpace.open(new)).check(memory_store)  # consistent
    hits = await memory_store.search_memories(
        (await new.use_model(TEXT_EMBEDDING, EmbeddingParams(text="memory number 7"))).vector,
        MemoryQuery(table_name="messages"),
        SearchParams(k=1),
    )
    assert hits[0][0].content.text == "memory number 7"
    assert (await read_records(memory_store))["messages"].state == "ready"
    assert await memory_store.count_memories(MemoryQuery(table_name=RECORD_TABLE)) == 2


async def test_vectors_of_a_fallback_model_are_not_stored(memory_store: DatabaseAdapter) -> None:
    space = EmbeddingSpace((await EmbeddingSpace.open(_models(48))).current)
    other = EmbeddingResult(vectors=[[1.0] * 48], model="another-model")
    assert not space.accept(other)
    assert space.accept(EmbeddingResult(vectors=[[1.0] * 48], model="hashed-ngrams"))
    assert not space.accept(EmbeddingResult(vectors=[[1.0] * 16], model="hashed-ngrams"))


async def test_a_model_down_at_start_keeps_the_stored_model_and_no_fallback_vector_gets_in(
    memory_store: DatabaseAdapter,
) -> None:
    up = True

    async def remote(params: EmbeddingParams) -> EmbeddingResult:
        if not up:
            raise ModelCallError("connection refused", provider="remote", retryable=True)
        return EmbeddingResult(vectors=[[0.5] * 8 for _ in params.texts], model="remote-8")

    models = _models(8)  # the hashed fallback, at the same dimension
    models.register(ModelHandler(TEXT_EMBEDDING, remote, priority=10), owner="remote")
    space = await space_for(memory_store, models)
    assert space is not None and str(space.current) == "remote-8 (8-d)"
    up = False  # the server is down at the next start: not "the model changed"
    again = await space_for(memory_store, models)
    assert again is not None and again.current == space.current
    fallback = await models.use_model(TEXT_EMBEDDING, EmbeddingParams(text="hi"))
    assert fallback.model == "hashed-ngrams" and not again.accept(fallback)


async def test_processes_starting_at_once_record_a_table_once(
    memory_store: DatabaseAdapter,
) -> None:
    """Two processes of a cluster start on one store: both read no record, one creates it; the
    other must compare with it, not fail on the duplicate (the api process exited on it)."""
    first = EmbeddingSpace((await EmbeddingSpace.open(_models(48))).current)
    second = EmbeddingSpace(first.current)
    stale_reads = 1

    class StaleFirstRead:
        """The store as the second process saw it: its first read of the records came before
        the first process's create."""

        def __getattr__(self, name: str) -> Any:
            return getattr(memory_store, name)

        async def get_memories(self, query: MemoryQuery) -> list[Memory]:
            nonlocal stale_reads
            if query.table_name == RECORD_TABLE and stale_reads:
                stale_reads -= 1
                return []
            return await memory_store.get_memories(query)

    await first.check(memory_store, ["messages"])
    await second.check(StaleFirstRead(), ["messages"])  # type: ignore[arg-type]
    assert stale_reads == 0
    assert (await read_records(memory_store))["messages"].model == first.current
    other = EmbeddingSpace(EmbeddingModel("another-model", 48))
    stale_reads = 1
    with pytest.raises(EmbeddingModelChangedError):  # a record made meanwhile is compared
        await other.check(StaleFirstRead(), ["messages"])  # type: ignore[arg-type]
