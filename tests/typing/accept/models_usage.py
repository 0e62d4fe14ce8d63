"""Well-typed model calls pass mypy."""

from __future__ import annotations

from contracts.models import TEXT_EMBEDDING, TEXT_LARGE, EmbeddingParams, TextParams
from host.models import ModelRegistry

registry = ModelRegistry()


async def calls() -> float:
    reply = await registry.use_model(TEXT_LARGE, TextParams(prompt="hi", temperature=0.5))
    vector = (await registry.use_model(TEXT_EMBEDDING, EmbeddingParams(text=reply.text))).vector
    async for chunk in registry.stream_model(TEXT_LARGE, TextParams(prompt="hi")):
        print(chunk.text)
    return vector[0]
