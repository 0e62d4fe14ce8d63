"""Model calls are typed per model type: wrong params, missing fields, wrong result use."""

from __future__ import annotations

from contracts.models import (
    TEXT_EMBEDDING,
    TEXT_LARGE,
    EmbeddingParams,
    ModelHandler,
    TextParams,
    TextResult,
)
from host.models import ModelRegistry

registry = ModelRegistry()


async def calls() -> None:
    await registry.use_model(TEXT_LARGE, EmbeddingParams(text="x"))  # E: Cannot infer value of type parameter "P" of "use_model"
    await registry.use_model(TEXT_LARGE, {"prompt": "x"})  # E: Cannot infer value of type parameter "P" of "use_model"
    EmbeddingParams()  # E: Missing named argument "text" for "EmbeddingParams"
    TextParams(prompt="x", temperature="hot")  # E: Argument "temperature" to "TextParams" has incompatible type "str"
    TextParams(prompt="x", max_tokens=1.5)  # E: Argument "max_tokens" to "TextParams" has incompatible type "float"
    result = await registry.use_model(TEXT_LARGE, TextParams(prompt="x"))
    result.vectors  # E: "TextResult" has no attribute "vectors"
    vectors: list[list[float]] = (await registry.use_model(TEXT_EMBEDDING, EmbeddingParams(text="x"))).text  # E: "EmbeddingResult" has no attribute "text"
    del vectors


async def embed_as_text(params: EmbeddingParams) -> TextResult:
    return TextResult(text="")


ModelHandler(TEXT_LARGE, embed_as_text)  # E: Argument 2 to "ModelHandler" has incompatible type
