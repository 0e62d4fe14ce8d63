"""The openai plugin against local servers that behave like the real ones: Ollama (its model
names, ``/v1/models``, its error JSON), a rate-limiting one (429 + ``Retry-After``), a slow
stream and a stream dropped mid-way; and the fallback that follows, never silent."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loguru import logger
from pydantic import SecretStr

from builtin_plugins.eliza import ElizaPlugin
from builtin_plugins.openai import OpenAIPlugin, OpenAISettings
from builtin_plugins.openai.catalog import ModelCatalog, closest, served_names
from builtin_plugins.openai.retry import RetrySettings, parse_retry_after
from contracts.events import MODEL_USED, ModelUsedPayload
from contracts.models import (
    TEXT_EMBEDDING,
    TEXT_LARGE,
    EmbeddingParams,
    ModelCallError,
    ModelError,
    ModelHandler,
    ModelSettings,
    TextParams,
)
from host.events import EventBus
from host.metrics.events import MODEL_PROVIDER_FALLBACKS, EventMetrics
from host.metrics.memory import InMemoryMetrics
from host.models import CallContext, ModelRegistry, call_context

from .openai_server import OLLAMA_MODELS, Behaviour, ollama_like, protocol_app

KEY = "sk-test-0123456789abcdef"
FAST = {"wait_initial": 0.01, "wait_jitter": 0.0, "wait_max": 0.05}


async def serve(behaviour: Behaviour) -> AsyncIterator[str]:
    from host.http import HttpServer

    http = HttpServer(protocol_app(behaviour), port=0)
    await http.start()
    try:
        yield http.url
    finally:
        await http.stop()


@pytest.fixture
async def ollama() -> AsyncIterator[tuple[str, Behaviour]]:
    behaviour = ollama_like()
    async for url in serve(behaviour):
        yield url, behaviour


@pytest.fixture
async def openai() -> AsyncIterator[tuple[str, Behaviour]]:
    behaviour = Behaviour(served=["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"])
    async for url in serve(behaviour):
        yield url, behaviour


async def started(url: str, **settings: Any) -> OpenAIPlugin:
    settings.setdefault("retry", RetrySettings(**FAST))
    settings.setdefault("api_key", SecretStr(KEY))
    plugin = OpenAIPlugin(
        OpenAISettings(base_url=f"{url}/v1", **settings),
        logger.bind(plugin="openai"),
    )
    await plugin.setup()
    return plugin


def registry_of(
    plugin: OpenAIPlugin, bus: EventBus | None = None, **settings: Any
) -> ModelRegistry:
    registry = ModelRegistry(ModelSettings(**settings), events=bus)
    for handler in plugin.models():
        registry.register(handler, owner="openai")
    for handler in ElizaPlugin().models():
        registry.register(handler, owner="eliza")
    return registry


def caller(**prefs: Any) -> CallContext:
    return CallContext(uuid4(), uuid4(), uuid4(), **prefs)


# Ollama ---------------------------------------------------------------------------------------


async def test_ollama_names_work_on_the_first_try(
    ollama: tuple[str, Behaviour], logs: io.StringIO
) -> None:
    """``llama3.2`` (Ollama serves it as ``llama3.2:latest``) and the embedding model, set per
    model type: every call answers at its first request, nothing is reported."""
    url, behaviour = ollama
    plugin = await started(
        url,
        api_key=None,
        models={"text_large": "llama3.2", "text_small": "qwen2.5:7b",
                "text_embedding": "nomic-embed-text"},
    )  # fmt: skip
    try:
        assert behaviour.listings == 1 and plugin.catalog.names == tuple(sorted(OLLAMA_MODELS))
        registry = registry_of(plugin)
        reply = await registry.use_model(TEXT_LARGE, TextParams(prompt="hello"))
        vectors = await registry.use_model(TEXT_EMBEDDING, EmbeddingParams(text="hello"))
        assert reply.text == "echo: hello" and len(vectors.vector) == 8
        assert [r["model"] for r in behaviour.requests] == ["llama3.2", "nomic-embed-text"]
        assert "WARNING" not in logs.getvalue()
    finally:
        await plugin.teardown()


async def test_default_names_on_ollama_are_named_at_setup_with_the_way_out(
    ollama: tuple[str, Behaviour], logs: io.StringIO
) -> None:
    url, behaviour = ollama
    plugin = await started(url, api_key=None)
    try:
        text = logs.getvalue()
        assert (
            "text_large: model 'gpt-4o' (the default) is not served by "
            f"{url}/v1; set plugins.openai.models.text_large "
            "(AGENTHOST_PLUGINS__OPENAI__MODELS__TEXT_LARGE) to one it serves: "
        ) in text
        line = next(x for x in text.splitlines() if "model 'text-embedding-3-small'" in x)
        assert "plugins.openai.models.text_embedding" in line
        assert line.count("WARNING") == 1 and "its calls go to the fallback provider" in line
        # the calls of those types fail at once (no request), so the fallback answers
        with pytest.raises(ModelCallError) as info:
            await plugin.text_large(TextParams(prompt="hi"))
        assert info.value.retryable and info.value.reason == "model_not_served"
        assert behaviour.requests == []
    finally:
        await plugin.teardown()


def test_closest_names_first() -> None:
    assert closest("llama3", OLLAMA_MODELS)[:2] == ["llama3.1:8b", "llama3.2:latest"]
    assert closest("nomic-embed", OLLAMA_MODELS)[0] == "nomic-embed-text:latest"
    assert closest("qwen2.5", OLLAMA_MODELS)[0] == "qwen2.5:7b"
    catalog = ModelCatalog()
    assert catalog.serves("anything")  # nothing known: nothing refused
    catalog.update(["llama3.2:latest", "qwen2.5:7b"])
    assert catalog.serves("llama3.2") and catalog.serves("qwen2.5:7b")
    assert not catalog.serves("qwen2.5") and not catalog.serves("llama3.2:1b")
    assert served_names({"models": [{"name": "b"}, {"name": "a"}]}) == ["a", "b"]
    assert served_names({"detail": "Not Found"}) is None


async def test_check_models_fail_fails_the_setup_naming_every_setting(
    ollama: tuple[str, Behaviour],
) -> None:
    url, _ = ollama
    with pytest.raises(ModelError) as info:
        await started(url, check_models="fail", models={"text_embedding": "nomic-embed-text"})
    message = str(info.value)
    for kind in ("text_small", "text_large"):  # the object types take their names
        assert f"plugins.openai.models.{kind}" in message
    assert "text_embedding" not in message and "object_" not in message
    assert "llama3.2:latest" in message


async def test_an_object_types_own_name_is_checked(ollama: tuple[str, Behaviour]) -> None:
    url, _ = ollama
    served = {"text_small": "llama3.2", "text_large": "llama3.2",
              "text_embedding": "nomic-embed-text"}  # fmt: skip
    with pytest.raises(ModelError) as info:
        await started(url, check_models="fail", models={**served, "object_large": "llama3"})
    assert str(info.value).startswith(
        "object_large: model 'llama3' (plugins.openai.models.object_large) is not served"
    )
    assert "set plugins.openai.models.object_large" in str(info.value)


async def test_a_server_without_a_model_list_still_names_the_setting(
    ollama: tuple[str, Behaviour], logs: io.StringIO
) -> None:
    """No ``/v1/models`` at setup (a warning): the 404 of an unknown model (Ollama's error
    JSON) then names the setting and the server's answer, and the fallback answers."""
    url, behaviour = ollama
    served, behaviour.served = behaviour.served, None
    plugin = await started(url)
    behaviour.served = served
    bus = EventBus()
    used: list[ModelUsedPayload] = []
    bus.on(MODEL_USED, used.append)
    try:
        assert "model names are not checked" in logs.getvalue()
        token = call_context.set(context := caller())
        try:
            reply = await registry_of(plugin, bus).use_model(
                TEXT_LARGE, TextParams(prompt="Men are all alike.")
            )
        finally:
            call_context.reset(token)
        assert reply.text == "In what way?"
        assert len(behaviour.requests) == 1  # a 404 is not retried
        assert used[0].error is not None
        assert "plugins.openai.models.text_large" in used[0].error
        assert "llama3.2:latest" in used[0].error  # listed again after the 404
        assert [m.as_dict() for m in context.fallbacks] == [
            {"from": "openai", "to": "eliza", "reason": "model_not_served",
             "model_type": "text_large"}
        ]  # fmt: skip
    finally:
        await plugin.teardown()


async def test_an_agents_model_names_and_provider_go_into_its_calls(
    ollama: tuple[str, Behaviour],
) -> None:
    url, behaviour = ollama
    plugin = await started(url)
    registry = registry_of(plugin)
    registry.register(ModelHandler(TEXT_LARGE, ElizaPlugin().reply, priority=50), owner="eliza2")
    try:
        token = call_context.set(
            caller(provider="openai", model_names={"text_large": "llama3.1:8b"})
        )
        try:
            reply = await registry.use_model(TEXT_LARGE, TextParams(prompt="hi"))
        finally:
            call_context.reset(token)
        assert reply.text == "echo: hi"  # openai first although eliza2 has a higher priority
        assert behaviour.requests[-1]["model"] == "llama3.1:8b"
        # a name the server does not serve, asked by the agent: said, then the fallback answers
        token = call_context.set(
            context := caller(provider="openai", model_names={"text_large": "llama9"})
        )
        try:
            reply = await registry.use_model(TEXT_LARGE, TextParams(prompt="Men are all alike."))
        finally:
            call_context.reset(token)
        assert reply.text == "In what way?"
        assert context.fallbacks[0].reason == "model_not_served"
    finally:
        await plugin.teardown()


# rate limits ----------------------------------------------------------------------------------


def test_retry_after_in_seconds_milliseconds_and_http_dates() -> None:
    now = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": " 1.5 "}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == 7.0
    assert parse_retry_after({"retry-after": date}, now=now + timedelta(seconds=60)) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


async def test_a_429_is_retried_after_the_seconds_it_asks(
    openai: tuple[str, Behaviour], logs: io.StringIO
) -> None:
    url, behaviour = openai
    behaviour.rate_limits = ["1"]
    plugin = await started(url)
    try:
        started_at = time.monotonic()
        reply = await registry_of(plugin).use_model(TEXT_LARGE, TextParams(prompt="hello"))
        elapsed = time.monotonic() - started_at
        assert reply.text == "echo: hello"  # openai answered: no fallback
        assert len(behaviour.requests) == 2
        gap = behaviour.times[1] - behaviour.times[0]
        assert 0.9 <= gap < 3.0 and elapsed < 5.0
        assert "retrying in 1.0s (Retry-After)" in logs.getvalue()
    finally:
        await plugin.teardown()


async def test_a_429_with_an_http_date_is_retried_then(openai: tuple[str, Behaviour]) -> None:
    url, behaviour = openai
    when = datetime.now(UTC) + timedelta(seconds=2)
    behaviour.rate_limits = [format_datetime(when, usegmt=True)]
    plugin = await started(url)
    try:
        reply = await plugin.text_large(TextParams(prompt="hello"))
        assert reply.text == "echo: hello" and len(behaviour.requests) == 2
        gap = behaviour.times[1] - behaviour.times[0]
        assert 0.5 <= gap < 3.5  # the date has whole seconds
    finally:
        await plugin.teardown()


async def test_retries_are_bounded_then_the_fallback_answers_marked(
    openai: tuple[str, Behaviour], logs: io.StringIO
) -> None:
    """Three 429s (no Retry-After) with ``attempts: 3``: three requests, then ELIZA answers;
    a WARNING names the provider, model type and reason, the metric counts it and the
    caller's context carries the mark."""
    url, behaviour = openai
    behaviour.rate_limits = [None, None, None, None]
    plugin = await started(url, retry=RetrySettings(attempts=3, **FAST))
    bus = EventBus()
    metrics = InMemoryMetrics()
    EventMetrics(metrics).subscribe(bus)
    try:
        token = call_context.set(context := caller())
        try:
            reply = await registry_of(plugin, bus).use_model(
                TEXT_LARGE, TextParams(prompt="Men are all alike.")
            )
        finally:
            call_context.reset(token)
        assert reply.text == "In what way?"
        assert len(behaviour.requests) == 3
        assert [m.as_dict() for m in context.fallbacks] == [
            {"from": "openai", "to": "eliza", "reason": "rate_limited",
             "model_type": "text_large"}
        ]  # fmt: skip
        warning = next(x for x in logs.getvalue().splitlines() if "(fallback)" in x)
        assert warning.startswith("WARNING text_large: provider openai was passed over")
        assert "rate_limited: ModelCallError: HTTP 429" in warning and "eliza answered" in warning
        tags = {"provider": "openai", "model_type": "text_large", "reason": "rate_limited"}
        assert metrics.total(MODEL_PROVIDER_FALLBACKS, **tags) == 1
    finally:
        await plugin.teardown()


async def test_a_retry_after_too_long_is_not_waited_for(
    openai: tuple[str, Behaviour], logs: io.StringIO
) -> None:
    url, behaviour = openai
    behaviour.rate_limits = ["120"]
    plugin = await started(url)
    try:
        started_at = time.monotonic()
        reply = await registry_of(plugin).use_model(
            TEXT_LARGE, TextParams(prompt="Men are all alike.")
        )
        assert reply.text == "In what way?" and time.monotonic() - started_at < 2.0
        assert len(behaviour.requests) == 1
        assert "retry after 120.0s, over the 10.0s allowed" in logs.getvalue()
    finally:
        await plugin.teardown()


# streams --------------------------------------------------------------------------------------


async def test_a_slow_stream_outlasting_the_timeout_is_fine(
    openai: tuple[str, Behaviour],
) -> None:
    """``models.timeout`` bounds each wait for a chunk, not the whole stream."""
    url, behaviour = openai
    behaviour.chunk_delay = 0.25
    plugin = await started(url)
    try:
        started_at = time.monotonic()
        chunks = [
            c.text
            async for c in registry_of(plugin, timeout=0.8).stream_model(
                TEXT_LARGE, TextParams(prompt="one two three four five")
            )
        ]
        assert "".join(chunks).strip() == "echo: one two three four five"
        assert time.monotonic() - started_at > 1.2  # longer than the timeout
        behaviour.chunk_delay = 1.5  # stalled: abandoned, and the fallback cannot take over
        with pytest.raises(TimeoutError):
            async for _ in registry_of(plugin, timeout=0.5).stream_model(
                TEXT_LARGE, TextParams(prompt="a b c")
            ):
                pass
    finally:
        await plugin.teardown()


async def test_a_stream_dropped_mid_way_is_an_error_naming_it(
    openai: tuple[str, Behaviour],
) -> None:
    url, behaviour = openai
    behaviour.drop_after = 2
    plugin = await started(url)
    received: list[str] = []
    try:
        with pytest.raises(ModelCallError) as info:
            async for chunk in registry_of(plugin).stream_model(
                TEXT_LARGE, TextParams(prompt="one two three four")
            ):
                received.append(chunk.text)
        assert received == ["echo: ", "one "]  # what came before the cut
        assert info.value.reason == "stream_cut"
        assert f"the stream from {url}/v1 broke off after 2 chunks" in str(info.value)
        # dropped before any chunk: the fallback still answers, marked
        behaviour.drop_after = 0
        token = call_context.set(context := caller())
        try:
            text = "".join(
                [
                    c.text
                    async for c in registry_of(plugin).stream_model(
                        TEXT_LARGE, TextParams(prompt="Men are all alike.")
                    )
                ]
            )
        finally:
            call_context.reset(token)
        assert text == "In what way?"
        assert context.fallbacks[0].reason == "stream_cut"
    finally:
        await plugin.teardown()


@settings(max_examples=200, deadline=None)
@given(
    retry_after=st.one_of(st.none(), st.text(max_size=40)),
    millis=st.one_of(st.none(), st.text(max_size=12)),
)
def test_any_retry_after_header_is_a_wait_or_none(
    retry_after: str | None, millis: str | None
) -> None:
    """Whatever a server sends, a wait of zero or more seconds or None, never an error."""
    headers = {}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    if millis is not None:
        headers["retry-after-ms"] = millis
    wait = parse_retry_after(headers)
    assert wait is None or wait >= 0  # NaN is not >= 0: refused too


@settings(max_examples=200, deadline=None)
@given(
    data=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["data", "models", "id", "name", "x"]), inner,
                          max_size=4),
        max_leaves=20,
    )
)  # fmt: skip
def test_any_model_listing_is_names_or_none(data: object) -> None:
    names = served_names(data)
    assert names is None or all(isinstance(n, str) and n for n in names)


async def test_a_stream_refused_with_429_is_opened_again_after_retry_after(
    openai: tuple[str, Behaviour],
) -> None:
    url, behaviour = openai
    behaviour.rate_limits = ["0.5"]
    plugin = await started(url)
    try:
        chunks = [c.text async for c in plugin.stream_large(TextParams(prompt="a b"))]
        assert "".join(chunks).strip() == "echo: a b"
        assert len(behaviour.requests) == 2 and all(r["stream"] for r in behaviour.requests)
        assert 0.4 <= behaviour.times[1] - behaviour.times[0] < 2.5
    finally:
        await plugin.teardown()
