"""The openai plugin against a real local server speaking the protocol (streaming included),
and the fallback to ELIZA when that server fails or is down."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from loguru import logger
from pydantic import BaseModel, SecretStr

from builtin_plugins.eliza import ElizaPlugin
from builtin_plugins.openai import OpenAIPlugin, OpenAISettings
from builtin_plugins.openai.retry import RetrySettings
from contracts.events import MODEL_USED, ModelUsedPayload
from contracts.models import (
    OBJECT_SMALL,
    TEXT_EMBEDDING,
    TEXT_LARGE,
    EmbeddingParams,
    ModelCallError,
    ObjectParams,
    TextParams,
)
from contracts.vector import Vector
from host.events import EventBus
from host.http import HttpServer
from host.models import ModelRegistry

from .openai_server import Behaviour, protocol_app

KEY = "sk-test-0123456789abcdef"


class Weather(BaseModel):
    city: str
    degrees: int


@pytest.fixture
async def server() -> AsyncIterator[tuple[HttpServer, Behaviour]]:
    behaviour = Behaviour()
    http = HttpServer(protocol_app(behaviour), port=0)
    await http.start()
    yield http, behaviour
    await http.stop()


async def plugin_for(url: str) -> OpenAIPlugin:
    settings = OpenAISettings(
        base_url=f"{url}/v1",
        api_key=SecretStr(KEY),
        large_model="big",
        retry=RetrySettings(wait_initial=0.01, wait_jitter=0),
    )
    plugin = OpenAIPlugin(settings, logger.bind(plugin="openai"))
    await plugin.setup()
    return plugin


def registry_with(plugin: OpenAIPlugin, bus: EventBus | None = None) -> ModelRegistry:
    registry = ModelRegistry(events=bus)
    for handler in plugin.models():
        registry.register(handler, owner="openai")
    for handler in ElizaPlugin().models():
        registry.register(handler, owner="eliza")
    return registry


@pytest.mark.parametrize("bad", [["x", 1.0], [], [1.0, 1e39], [[1.0]]])
async def test_a_malformed_embedding_is_a_bad_response(
    server: tuple[HttpServer, Behaviour], bad: list[Any]
) -> None:
    http, behaviour = server
    behaviour.embedding = bad
    plugin = await plugin_for(http.url)
    try:
        with pytest.raises(ModelCallError, match="no valid vector") as info:
            await plugin.embed(EmbeddingParams(text=("a", "b")))
        assert info.value.reason == "bad_response" and info.value.retryable
    finally:
        await plugin.teardown()


async def test_chat_embeddings_and_json_output(server: tuple[HttpServer, Behaviour]) -> None:
    http, behaviour = server
    plugin = await plugin_for(http.url)
    registry = registry_with(plugin)
    try:
        result = await registry.use_model(
            TEXT_LARGE, TextParams(prompt="hello there", system="be brief", temperature=0.2)
        )
        assert result.text == "echo: hello there"
        assert result.usage is not None and result.usage.input_tokens == 7
        sent = behaviour.requests[-1]
        assert sent["model"] == "big" and sent["temperature"] == 0.2
        assert sent["messages"] == [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there"},
        ]
        assert behaviour.headers[-1]["authorization"] == f"Bearer {KEY}"

        vectors = await registry.use_model(TEXT_EMBEDDING, EmbeddingParams(text=("a", "b")))
        assert len(vectors.vectors) == 2 and vectors.vectors[0] != vectors.vectors[1]
        assert all(isinstance(v, Vector) and v.array.dtype == np.float32 for v in vectors.vectors)

        answer = await registry.use_model(
            OBJECT_SMALL, ObjectParams(prompt="weather?", output=Weather)
        )
        assert answer.value == Weather(city="Lyon", degrees=21)
        schema = behaviour.requests[-1]["response_format"]["json_schema"]["schema"]
        assert schema["required"] == ["city", "degrees"]
    finally:
        await plugin.teardown()


async def test_streaming(server: tuple[HttpServer, Behaviour]) -> None:
    http, behaviour = server
    plugin = await plugin_for(http.url)
    try:
        chunks = [
            c
            async for c in registry_with(plugin).stream_model(
                TEXT_LARGE, TextParams(prompt="stream me please")
            )
        ]
        assert "".join(c.text for c in chunks).strip() == "echo: stream me please"
        assert len(chunks) >= 4 and chunks[-1].finish_reason == "stop"
        assert chunks[-1].usage is not None and chunks[-1].usage.output_tokens == 4
        assert behaviour.requests[-1]["stream"] is True
    finally:
        await plugin.teardown()


async def test_a_server_refusing_stream_options_still_streams(
    server: tuple[HttpServer, Behaviour],
) -> None:
    """A 400 naming ``stream_options``: asked again without it (once: later streams leave it
    out), and the stream still ends with its finish reason, without usage."""
    http, behaviour = server
    behaviour.refuse_stream_options = True
    plugin = await plugin_for(http.url)
    try:
        for _ in range(2):
            stream = plugin.stream_large(TextParams(prompt="stream me"))
            chunks = [c async for c in stream]
            assert "".join(c.text for c in chunks).strip() == "echo: stream me"
            assert chunks[-1].finish_reason == "stop" and chunks[-1].usage is None
        assert ["stream_options" in r for r in behaviour.requests] == [True, False, False]
        behaviour.fail_status = 400  # any other 400 is still the caller's error, not retried
        with pytest.raises(ModelCallError) as info:
            [c async for c in plugin.stream_large(TextParams(prompt="again"))]
        assert info.value.status == 400 and not info.value.retryable
        assert len(behaviour.requests) == 4
        # a server naming stream_options in every 400: asked once more without it, no loop
        plugin._stream_usage = True
        behaviour.refuse_stream_options = False
        behaviour.fail_message = "Unrecognized request argument supplied: stream_options"
        with pytest.raises(ModelCallError) as info:
            [c async for c in plugin.stream_large(TextParams(prompt="and again"))]
        assert info.value.status == 400
        assert ["stream_options" in r for r in behaviour.requests[4:]] == [True, False]
    finally:
        await plugin.teardown()


async def test_a_500_falls_back_to_eliza(server: tuple[HttpServer, Behaviour]) -> None:
    http, behaviour = server
    behaviour.fail_status = 500
    bus = EventBus()
    used: list[ModelUsedPayload] = []
    bus.on(MODEL_USED, used.append)
    plugin = await plugin_for(http.url)
    try:
        result = await registry_with(plugin, bus).use_model(
            TEXT_LARGE, TextParams(prompt="Men are all alike.")
        )
        assert result.text == "In what way?"
        assert [(u.provider, u.fallback) for u in used] == [("openai", False), ("eliza", True)]
        assert "HTTP 500" in (used[0].error or "") and used[1].fallback_reason == "server_error"
        assert len(behaviour.requests) == 3  # retried (plugins.openai.retry.attempts), then ELIZA
        streamed = [
            c.text
            async for c in registry_with(plugin).stream_model(
                TEXT_LARGE, TextParams(prompt="Men are all alike.")
            )
        ]
        assert "".join(streamed) == "In what way?"
    finally:
        await plugin.teardown()


async def test_a_base_url_that_is_not_the_api_is_named_and_falls_back(
    server: tuple[HttpServer, Behaviour],
) -> None:
    """A web page where the API should be (200, HTML): a clear retryable error naming the URL,
    so ELIZA answers; a stream request gets the same fallback."""
    http, behaviour = server
    behaviour.web_page = True
    bus = EventBus()
    used: list[ModelUsedPayload] = []
    bus.on(MODEL_USED, used.append)
    plugin = await plugin_for(http.url)
    try:
        with pytest.raises(ModelCallError) as info:
            await plugin.embed(EmbeddingParams(text="hello"))
        assert info.value.retryable
        assert f"{http.url}/v1/embeddings answered 200 with text/html" in str(info.value)
        result = await registry_with(plugin, bus).use_model(
            TEXT_LARGE, TextParams(prompt="Men are all alike.")
        )
        assert result.text == "In what way?"
        assert "not a JSON object" in (used[0].error or "") and used[1].provider == "eliza"
        streamed = registry_with(plugin).stream_model(TEXT_LARGE, TextParams(prompt="I am sad"))
        assert "".join([c.text async for c in streamed]).startswith("I am sorry")
    finally:
        await plugin.teardown()


async def test_a_server_that_is_down_falls_back_to_eliza(
    server: tuple[HttpServer, Behaviour],
) -> None:
    http, _ = server
    url = http.url
    await http.stop()
    plugin = await plugin_for(url)
    try:
        result = await registry_with(plugin).use_model(TEXT_LARGE, TextParams(prompt="I am sad"))
        assert result.text.startswith("I am sorry to hear that you are sad")
    finally:
        await plugin.teardown()


async def test_auth_errors_are_not_retried_and_the_key_is_never_shown(
    server: tuple[HttpServer, Behaviour],
) -> None:
    http, behaviour = server
    behaviour.fail_status = 401
    sink = io.StringIO()
    handler = logger.add(sink, level="DEBUG")
    plugin = await plugin_for(http.url)
    try:
        with pytest.raises(ModelCallError) as info:
            await registry_with(plugin).use_model(TEXT_LARGE, TextParams(prompt="hi"))
        assert info.value.status == 401 and not info.value.retryable
        assert KEY not in str(info.value)
    finally:
        await plugin.teardown()
        logger.remove(handler)
    assert len(behaviour.requests) == 1
    assert KEY not in sink.getvalue()


def test_unconfigured_plugin_registers_no_models() -> None:
    plugin = OpenAIPlugin(OpenAISettings(), logger.bind(plugin="openai"))
    assert not plugin.configured and plugin.models() == ()
    local = OpenAIPlugin(OpenAISettings(base_url="http://127.0.0.1:11434/v1"), logger)
    assert local.configured and len(local.models()) == 5
