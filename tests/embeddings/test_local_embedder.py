"""`contracts.embedders.LocalEmbedder`, the engine wrapper of the e5 and minilm plugins, with a
small in-process engine: loaded once on first use (not at construction), texts cut into batches
in order, one call at a time, and an engine that cannot load is a retryable error naming the
plugin, after which the registry's next handler answers."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from builtin_plugins.eliza import ElizaPlugin
from contracts.embedders import LocalEmbedder, default_threads
from contracts.models import TEXT_EMBEDDING, EmbeddingParams, ModelCallError, ModelHandler
from host.models import ModelRegistry


class Engine:
    """Embeds a text as [its length, 1 if a query, its batch's size], normalised later by nobody."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.batches: list[list[str]] = []
        self.busy = 0
        self.overlap = False
        self.guard = threading.Lock()

    def encode(self, texts: list[str], query: bool) -> list[list[float]]:
        with self.guard:
            self.busy += 1
            self.overlap |= self.busy > 1
        time.sleep(0.005)
        self.batches.append(list(texts))
        with self.guard:
            self.busy -= 1
        return [[float(len(t)), float(query), float(len(texts))] for t in texts]


def _embedder(loads: list[Engine], **kwargs: object) -> LocalEmbedder[Engine]:
    def load(threads: int) -> Engine:
        loads.append(Engine(threads))
        return loads[-1]

    return LocalEmbedder[Engine](
        provider="mine",
        model_name="mine-v1",
        load=load,
        encode=lambda engine, texts, query: engine.encode(texts, query),
        **kwargs,  # type: ignore[arg-type]
    )


async def test_loads_once_on_first_use_and_cuts_batches_in_order() -> None:
    loads: list[Engine] = []
    embedder = _embedder(loads, batch_size=2, threads=3)
    assert loads == [] and embedder.loaded is None  # nothing loaded at construction
    texts = tuple("x" * n for n in range(1, 6))
    result = await embedder.embed(EmbeddingParams(text=texts, kind="query"))
    assert len(loads) == 1 and loads[0].threads == 3
    assert loads[0].batches == [["x", "xx"], ["xxx", "xxxx"], ["xxxxx"]]
    assert [v.array.tolist() for v in result.vectors] == [
        [1.0, 1.0, 2.0],
        [2.0, 1.0, 2.0],
        [3.0, 1.0, 2.0],
        [4.0, 1.0, 2.0],
        [5.0, 1.0, 1.0],
    ]
    assert result.model == "mine-v1" and result.usage.input_tokens == 5
    passage = (await embedder.embed(EmbeddingParams(text="abc"))).vector
    assert passage.array.tolist() == [3.0, 0.0, 1.0] and len(loads) == 1
    assert (await embedder.embed(EmbeddingParams(text=()))).vectors == []
    embedder.close()
    assert embedder.loaded is None
    await embedder.embed(EmbeddingParams(text="again"))
    assert len(loads) == 2  # loaded again after close


async def test_calls_run_one_at_a_time_off_the_event_loop() -> None:
    loads: list[Engine] = []
    embedder = _embedder(loads)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    beat = asyncio.create_task(ticker())
    await asyncio.gather(*(embedder.embed(EmbeddingParams(text=f"t{i}")) for i in range(8)))
    beat.cancel()
    assert not loads[0].overlap and len(loads[0].batches) == 8
    assert ticks > 8  # the loop kept running while the engine worked


async def test_an_engine_that_cannot_load_is_retryable_and_the_next_handler_answers() -> None:
    def broken(threads: int) -> Engine:
        raise OSError("model file missing")

    embedder = LocalEmbedder[Engine](
        provider="mine", model_name="mine-v1", load=broken, encode=lambda e, t, q: []
    )
    with pytest.raises(ModelCallError) as caught:
        await embedder.embed(EmbeddingParams(text="hi"))
    assert caught.value.retryable and caught.value.provider == "mine"
    assert "mine model cannot be loaded: model file missing" in str(caught.value)
    registry = ModelRegistry()
    registry.register(ModelHandler(TEXT_EMBEDDING, embedder.embed, priority=0), owner="mine")
    for handler in ElizaPlugin().models():
        registry.register(handler, owner="eliza")
    answered = await registry.use_model(TEXT_EMBEDDING, EmbeddingParams(text="hello"))
    assert answered.model == "hashed-ngrams"


def test_default_threads_prefers_the_setting_then_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads(7) == 7
    assert default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "zero")
    assert 1 <= default_threads() <= 4
