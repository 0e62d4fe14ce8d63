"""Model calls through the plugin-facing `ModelRuntime` and the agent runtime, as the docs show
them, and a plugin's own model type, pass mypy."""

from __future__ import annotations

from pydantic import BaseModel

from contracts.models import (
    OBJECT_SMALL,
    TEXT_LARGE,
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


class Answer(BaseModel):
    value: int


async def caption(params: CaptionParams) -> TextResult:
    return TextResult(text=params.image_url)


HANDLER = ModelHandler(CAPTION, caption, priority=5)


async def through_the_service(models: ModelRuntime) -> str:
    reply = await models.use_model(TEXT_LARGE, TextParams(prompt="Hello", temperature=0.7))
    described = await models.use_model(CAPTION, CaptionParams(image_url="file:///a.png"))
    answer = await models.use_model(OBJECT_SMALL, ObjectParams(prompt="n?", output=Answer))
    return reply.text + described.text + str(answer.data)


async def through_the_agent(runtime: AgentRuntime) -> str:
    reply = await runtime.use_model(TEXT_LARGE, TextParams(prompt="Hello"), provider="eliza")
    parts = [chunk.text async for chunk in runtime.stream_model(TEXT_LARGE, TextParams(prompt="x"))]
    return reply.text + "".join(parts)
