"""Model registry: selection order, pins, fallback rules, circuit breaker, streaming, events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from loguru import logger

from contracts.events import MODEL_USED, ModelUsedPayload
from contracts.models import (
    TEXT_EMBEDDING,
    TEXT_LARGE,
    EmbeddingParams,
    EmbeddingResult,
    InvalidModelParamsError,
    ModelCallError,
    ModelHandler,
    ModelSettings,
    NoModelHandlerError,
    TextChunk,
    TextParams,
    TextResult,
    Usage,
)
from host.events import EventBus
from host.models import ModelRegistry


def answering(text: str, calls: list[str] | None = None) -> ModelHandler[TextParams, TextResult]:
    async def handler(params: TextParams) -> TextResult:
        if calls is not None:
            calls.append(text)
        return TextResult(
            text=f"{text}:{params.prompt}", usage=Usage(input_tokens=3, output_tokens=2)
        )

    return ModelHandler(TEXT_LARGE, handler)


def failing(error: Exception, calls: list[str], name: str) -> ModelHandler[TextParams, TextResult]:
    async def handler(params: TextParams) -> TextResult:
        calls.append(name)
        raise error

    return ModelHandler(TEXT_LARGE, handler)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_priority_then_registration_order_and_explicit_provider() -> None:
    registry = ModelRegistry()
    registry.register(answering("low"), owner="low", priority=1)
    registry.register(answering("first"), owner="first", priority=5)
    registry.register(answering("second"), owner="second", priority=5)
    assert registry.providers(TEXT_LARGE) == ["first", "second", "low"]
    result = await registry.use_model(TEXT_LARGE, TextParams(prompt="hi"))
    assert result.text == "first:hi"
    chosen = await registry.use_model(TEXT_LARGE, TextParams(prompt="hi"), provider="low")
    assert chosen.text == "low:hi"
    with pytest.raises(NoModelHandlerError, match=r"provider 'nope'.*first, second, low"):
        await registry.use_model(TEXT_LARGE, TextParams(prompt="hi"), provider="nope")


async def test_a_config_pin_goes_first() -> None:
    registry = ModelRegistry(ModelSettings(pins={"text_large": "low"}))
    registry.register(answering("high"), owner="high", priority=9)
    registry.register(answering("low"), owner="low", priority=1)
    assert (await registry.use_model(TEXT_LARGE, TextParams(prompt="x"))).text == "low:x"


async def test_a_pin_naming_no_provider_of_the_type_is_reported_once() -> None:
    """A pinned provider that registers nothing for the type (a typo, a failed or unconfigured
    plugin) is warned about, naming the key and what answers instead, once per registration
    change; calls go on by priority."""
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="WARNING")
    try:
        registry = ModelRegistry(ModelSettings(pins={"text_large": "opnai"}))
        registry.register(answering("eliza"), owner="eliza", priority=1)
        registry.register(answering("other"), owner="other", priority=0)
        for _ in range(3):
            assert (await registry.use_model(TEXT_LARGE, TextParams(prompt="x"))).text == "eliza:x"
        warned = [line for line in lines if "models.pins.text_large" in line]
        assert len(warned) == 1
        assert "'opnai', which has no text_large handler: eliza answers instead" in warned[0]
        assert "(registered: eliza, other)" in warned[0]
        registry.register(answering("opnai"), owner="opnai", priority=-5)
        assert (await registry.use_model(TEXT_LARGE, TextParams(prompt="x"))).text == "opnai:x"
        assert len([line for line in lines if "models.pins" in line]) == 1
    finally:
        logger.remove(sink)


async def test_retryable_errors_fall_back_and_others_raise_at_once() -> None:
    bus = EventBus()
    used: list[ModelUsedPayload] = []
    bus.on(MODEL_USED, used.append)
    registry = ModelRegistry(events=bus)
    calls: list[str] = []
    registry.register(failing(TimeoutError(), calls, "slow"), owner="slow", priority=3)
    registry.register(
        failing(ModelCallError("503", provider="busy", retryable=True, status=503), calls, "busy"),
        owner="busy",
        priority=2,
    )
    registry.register(answering("eliza", calls), owner="eliza", priority=1)
    result = await registry.use_model(TEXT_LARGE, TextParams(prompt="hi"))
    assert result.text == "eliza:hi" and calls == ["slow", "busy", "eliza"]
    assert [(u.provider, u.fallback, u.fallback_from, u.error is None) for u in used] == [
        ("slow", False, (), False),
        ("busy", True, ("slow",), False),
        ("eliza", True, ("slow", "busy"), True),
    ]
    assert used[-1].input_tokens == 3 and used[-1].output_tokens == 2

    strict = ModelRegistry()
    calls.clear()
    strict.register(
        failing(ModelCallError("401", provider="x", retryable=False), calls, "auth"), owner="auth"
    )
    strict.register(answering("never", calls), owner="never", priority=-1)
    with pytest.raises(ModelCallError, match="401"):
        await strict.use_model(TEXT_LARGE, TextParams(prompt="hi"))
    assert calls == ["auth"]


async def test_circuit_breaker_skips_a_failing_provider_then_retries_it() -> None:
    clock = Clock()
    registry = ModelRegistry(ModelSettings(breaker_failures=2, breaker_cooldown=30), clock=clock)
    calls: list[str] = []
    registry.register(failing(ConnectionError(), calls, "down"), owner="down", priority=2)
    registry.register(answering("up", calls), owner="up", priority=1)
    for _ in range(2):
        await registry.use_model(TEXT_LARGE, TextParams(prompt="x"))
    assert calls == ["down", "up", "down", "up"]
    calls.clear()
    await registry.use_model(TEXT_LARGE, TextParams(prompt="x"))
    assert calls == ["up"]  # circuit open: skipped
    clock.now += 31
    await registry.use_model(TEXT_LARGE, TextParams(prompt="x"))
    assert calls == ["up", "down", "up"]  # half-open: tried again


async def test_all_failing_raises_naming_every_provider() -> None:
    registry = ModelRegistry()
    calls: list[str] = []
    registry.register(failing(TimeoutError("t"), calls, "a"), owner="a")
    registry.register(failing(ConnectionError("c"), calls, "b"), owner="b")
    with pytest.raises(ModelCallError, match=r"every provider of text_large failed \(a, b\)"):
        await registry.use_model(TEXT_LARGE, TextParams(prompt="x"))


async def test_no_handler_lists_what_is_registered() -> None:
    registry = ModelRegistry()
    registry.register(answering("eliza"), owner="eliza")
    with pytest.raises(
        NoModelHandlerError, match=r"no model handler for text_embedding.*text_large: eliza"
    ):
        await registry.use_model(TEXT_EMBEDDING, EmbeddingParams(text="x"))


async def test_untyped_params_are_validated_naming_the_field() -> None:
    registry = ModelRegistry()
    registry.register(answering("m"), owner="m")
    bad: object = {"prompt": "x", "temperature": 7}
    with pytest.raises(InvalidModelParamsError, match="field temperature"):
        await registry.use_model(TEXT_LARGE, bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidModelParamsError, match="field tempurature: Extra inputs"):
        await registry.use_model(TEXT_LARGE, {"prompt": "x", "tempurature": 1})  # type: ignore[arg-type]
    shorthand: object = "plain prompt"
    result = await registry.use_model(TEXT_LARGE, shorthand)  # type: ignore[arg-type]
    assert result.text == "m:plain prompt"


async def test_streaming_with_and_without_a_stream_handler() -> None:
    async def stream(params: TextParams) -> AsyncIterator[TextChunk]:
        for index, word in enumerate(["a", "b", "c"]):
            yield TextChunk(text=word, index=index)

    async def whole(params: TextParams) -> TextResult:
        return TextResult(text="abc")

    registry = ModelRegistry()
    registry.register(ModelHandler(TEXT_LARGE, whole, stream), owner="streamer")
    registry.register(ModelHandler(TEXT_LARGE, whole), owner="plain", priority=-1)
    chunks = [c.text async for c in registry.stream_model(TEXT_LARGE, TextParams(prompt="x"))]
    assert chunks == ["a", "b", "c"]
    single = [
        c async for c in registry.stream_model(TEXT_LARGE, TextParams(prompt="x"), provider="plain")
    ]
    assert [c.text for c in single] == ["abc"] and single[0].finish_reason == "stop"


async def test_a_streamed_call_records_the_whole_text_as_its_output() -> None:
    """model:used of a stream holds the joined text (what replay answers with), not the last
    chunk's; the finish reason is the last chunk's."""

    async def stream(params: TextParams) -> AsyncIterator[TextChunk]:
        yield TextChunk(text="Tell ", index=0)
        yield TextChunk(text="me more.", index=1, finish_reason="stop")

    async def whole(params: TextParams) -> TextResult:
        return TextResult(text="Tell me more.")

    bus = EventBus()
    used: list[ModelUsedPayload] = []
    bus.on(MODEL_USED, used.append)
    registry = ModelRegistry(events=bus)
    registry.register(ModelHandler(TEXT_LARGE, whole, stream), owner="streamer")
    assert [c.text async for c in registry.stream_model(TEXT_LARGE, TextParams(prompt="x"))] == [
        "Tell ",
        "me more.",
    ]
    (payload,) = used
    assert payload.streamed and payload.output is not None
    assert payload.output.model_dump()["text"] == "Tell me more."
    assert payload.output.model_dump()["finish_reason"] == "stop"


async def test_a_stream_falls_back_only_before_its_first_chunk() -> None:
    async def dies_early(params: TextParams) -> AsyncIterator[TextChunk]:
        raise ConnectionError("down")
        yield TextChunk(text="never")

    async def dies_late(params: TextParams) -> AsyncIterator[TextChunk]:
        yield TextChunk(text="partial")
        raise ConnectionError("cut")

    async def whole(params: TextParams) -> TextResult:
        return TextResult(text="backup")

    registry = ModelRegistry()
    registry.register(ModelHandler(TEXT_LARGE, whole, dies_early), owner="early", priority=2)
    registry.register(ModelHandler(TEXT_LARGE, whole), owner="backup", priority=1)
    assert [c.text async for c in registry.stream_model(TEXT_LARGE, TextParams(prompt="x"))] == [
        "backup"
    ]
    late = ModelRegistry()
    late.register(ModelHandler(TEXT_LARGE, whole, dies_late), owner="late", priority=2)
    late.register(ModelHandler(TEXT_LARGE, whole), owner="backup", priority=1)
    seen: list[str] = []
    with pytest.raises(ConnectionError):
        async for chunk in late.stream_model(TEXT_LARGE, TextParams(prompt="x")):
            seen.append(chunk.text)
    assert seen == ["partial"]
    # cut mid-way again and again: the breaker opens, and the next stream starts with backup
    for _ in range(late.settings.breaker_failures - 1):
        with pytest.raises(ConnectionError):
            [c async for c in late.stream_model(TEXT_LARGE, TextParams(prompt="x"))]
    assert [c.text async for c in late.stream_model(TEXT_LARGE, TextParams(prompt="x"))] == [
        "backup"
    ]


async def test_unregister_owner_removes_its_handlers() -> None:
    registry = ModelRegistry()

    async def embed(params: EmbeddingParams) -> EmbeddingResult:
        return EmbeddingResult(vectors=[[1.0] for _ in params.texts])

    registry.register(ModelHandler(TEXT_EMBEDDING, embed), owner="local")
    registry.register(answering("x"), owner="local")
    result = await registry.use_model(TEXT_EMBEDDING, EmbeddingParams(text=("a", "b")))
    assert len(result.vectors) == 2
    assert registry.unregister_owner("local") == 2
    assert registry.registered() == {}


async def test_calls_by_name_follow_registrations_made_after_earlier_calls() -> None:
    registry = ModelRegistry()
    registry.register(answering("old"), owner="named")
    params = TextParams(prompt="x")
    assert (await registry.use_model(TEXT_LARGE, params, provider="named")).text == "old:x"
    registry.unregister_owner("named")
    with pytest.raises(NoModelHandlerError, match="provider 'named' has no handler"):
        await registry.use_model(TEXT_LARGE, params, provider="named")
    registry.register(answering("new"), owner="named")  # a reload registering it again
    assert (await registry.use_model(TEXT_LARGE, params, provider="named")).text == "new:x"
    assert (await registry.use_model(TEXT_LARGE, params)).text == "new:x"


async def test_a_hung_provider_times_out_and_the_next_one_answers() -> None:
    async def hangs(params: TextParams) -> TextResult:
        await asyncio.sleep(30)
        raise AssertionError("not reached")

    registry = ModelRegistry(ModelSettings(timeout=0.2))
    registry.register(ModelHandler(TEXT_LARGE, hangs, priority=2), owner="hung")
    registry.register(answering("backup"), owner="backup", priority=1)
    result = await asyncio.wait_for(registry.use_model(TEXT_LARGE, TextParams(prompt="x")), 5)
    assert result.text == "backup:x"
    # the timeout left the task usable: a plain cancellation still propagates afterwards
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_a_stalled_stream_times_out_per_chunk_and_falls_back_before_the_first() -> None:
    closed: list[str] = []

    async def stalls_at_once(params: TextParams) -> AsyncIterator[TextChunk]:
        try:
            await asyncio.sleep(30)
            yield TextChunk(text="never")
        finally:
            closed.append("at once")

    async def stalls_after_one(params: TextParams) -> AsyncIterator[TextChunk]:
        try:
            yield TextChunk(text="first")
            await asyncio.sleep(30)
            yield TextChunk(text="never")
        finally:
            closed.append("after one")

    async def whole(params: TextParams) -> TextResult:
        return TextResult(text="backup")

    bus = EventBus()
    used: list[ModelUsedPayload] = []
    bus.on(MODEL_USED, used.append)
    registry = ModelRegistry(ModelSettings(timeout=0.2), events=bus)
    registry.register(ModelHandler(TEXT_LARGE, whole, stalls_at_once), owner="stalled", priority=2)
    registry.register(ModelHandler(TEXT_LARGE, whole), owner="backup", priority=1)

    async def texts(models: ModelRegistry) -> list[str]:
        return [c.text async for c in models.stream_model(TEXT_LARGE, TextParams(prompt="x"))]

    assert await asyncio.wait_for(texts(registry), 5) == ["backup"]
    assert closed == ["at once"]
    assert [(u.provider, u.fallback_from, (u.error or "")[:12]) for u in used] == [
        ("stalled", (), "TimeoutError"),
        ("backup", ("stalled",), ""),
    ]

    late = ModelRegistry(ModelSettings(timeout=0.2))
    late.register(ModelHandler(TEXT_LARGE, whole, stalls_after_one), owner="late", priority=2)
    late.register(ModelHandler(TEXT_LARGE, whole), owner="backup", priority=1)
    seen: list[str] = []
    with pytest.raises(TimeoutError, match=r"late took over 0\.2s"):
        async for chunk in late.stream_model(TEXT_LARGE, TextParams(prompt="x")):
            seen.append(chunk.text)
    assert seen == ["first"] and closed == ["at once", "after one"]
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_a_stream_closed_early_closes_the_providers_stream_at_once() -> None:
    closed: list[str] = []

    async def endless(params: TextParams) -> AsyncIterator[TextChunk]:
        try:
            while True:
                yield TextChunk(text="more")
        finally:
            closed.append("provider")

    async def whole(params: TextParams) -> TextResult:
        return TextResult(text="whole")

    registry = ModelRegistry()
    registry.register(ModelHandler(TEXT_LARGE, whole, endless), owner="endless")
    stream = registry.stream_model(TEXT_LARGE, TextParams(prompt="x"))
    assert (await anext(stream)).text == "more"
    await stream.aclose()  # type: ignore[attr-defined]
    assert closed == ["provider"]  # by aclose itself, not by a later garbage collection


async def test_model_used_carries_params_output_and_the_message_served() -> None:
    from uuid import uuid4

    from pydantic import BaseModel

    from contracts.models import OBJECT_SMALL, ObjectParams, ObjectResult
    from host.models import CallContext, call_context

    class Answer(BaseModel):
        value: int

    async def obj(params: ObjectParams) -> ObjectResult:
        return ObjectResult(data={"value": 1}, value=Answer(value=1))

    bus = EventBus()
    used: list[ModelUsedPayload] = []
    bus.on(MODEL_USED, used.append)
    registry = ModelRegistry(events=bus)
    registry.register(answering("m"), owner="m")
    registry.register(ModelHandler(OBJECT_SMALL, obj), owner="m")
    caller = CallContext(agent_id=uuid4(), room_id=uuid4(), message_id=uuid4())
    token = call_context.set(caller)
    try:
        await registry.use_model(TEXT_LARGE, TextParams(prompt="hi"))
        await registry.use_model(OBJECT_SMALL, ObjectParams(prompt="n?", output=Answer))
    finally:
        call_context.reset(token)
    await registry.use_model(TEXT_LARGE, TextParams(prompt="outside"))
    first = used[0]
    assert (first.agent_id, first.room_id, first.message_id) == (
        caller.agent_id,
        caller.room_id,
        caller.message_id,
    )
    data = first.model_dump(mode="json")
    assert data["params"]["prompt"] == "hi" and data["output"]["text"] == "m:hi"
    as_json = used[1].model_dump(mode="json")
    assert as_json["params"]["output"].endswith("Answer")
    assert used[2].message_id is None
