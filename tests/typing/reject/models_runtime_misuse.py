"""The plugin-facing surface is typed the same: `ModelRuntime` (the MODELS service) and the agent
runtime reject wrong params and wrong result use, for builtin and plugin-declared model types."""

from __future__ import annotations

from contracts.models import (
    OBJECT_SMALL,
    TEXT_LARGE,
    EmbeddingResult,
    ModelHandler,
    ModelParams,
    ModelRuntime,
    ModelType,
    ObjectParams,
    TextParams,
    TextResult,
)
from host.runtime import AgentRuntime


class CaptionParams(ModelParams):
    image_url: str


CAPTION = ModelType("typing_caption", CaptionParams, TextResult, operation="chat")


async def through_the_service(models: ModelRuntime) -> None:
    reply: EmbeddingResult = await models.use_model(TEXT_LARGE, TextParams(prompt="Hello"))  # E: expected "ModelType[TextParams, EmbeddingResult]"
    await models.use_model(CAPTION, TextParams(prompt="x"))  # E: Cannot infer value of type parameter "P" of "use_model"
    CaptionParams()  # E: Missing named argument "image_url" for "CaptionParams"
    ObjectParams(output=None)  # E: Missing named argument "prompt" for "ObjectParams"
    caption = await models.use_model(CAPTION, CaptionParams(image_url="file:///a.png"))
    caption.data  # E: "TextResult" has no attribute "data"
    async for chunk in models.stream_model(TEXT_LARGE, TextParams(prompt="x")):
        chunk.vectors  # E: "TextChunk" has no attribute "vectors"
    del reply


async def through_the_agent(runtime: AgentRuntime) -> None:
    await runtime.use_model(TEXT_LARGE, "Hello")  # E: Cannot infer value of type parameter "P" of "use_model" of "AgentRuntime"
    await runtime.use_model(OBJECT_SMALL, TextParams(prompt="x"))  # E: Cannot infer value of type parameter "P" of "use_model"
    text: str = await runtime.use_model(TEXT_LARGE, TextParams(prompt="Hello"))  # E: expected "ModelType[TextParams, str]"
    del text


async def caption_as_text(params: TextParams) -> TextResult:
    return TextResult(text="")


ModelHandler(CAPTION, caption_as_text)  # E: Argument 2 to "ModelHandler" has incompatible type
