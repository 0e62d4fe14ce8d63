"""``model:used`` payloads built without re-validation equal the validated ones in every case."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import pytest

from contracts.events import HANDLER_FAILED, MODEL_USED, HandlerFailedPayload, ModelUsedPayload
from contracts.models import (
    TEXT_LARGE,
    ModelCallError,
    ModelHandler,
    TextParams,
    TextResult,
    Usage,
)
from host.events import EventBus
from host.handles import PluginBus
from host.models import CallContext, ModelRegistry, call_context


class OddUsage:
    """A provider's own usage object with a float count (validated, and coerced, as before)."""

    input_tokens = 3.0
    output_tokens = 4


class OddResult(TextResult):
    pass


async def test_each_report_equals_the_payload_pydantic_validates() -> None:
    bus = EventBus()
    seen: list[ModelUsedPayload] = []
    bus.on(MODEL_USED, seen.append)
    models = ModelRegistry(events=bus)

    async def down(params: TextParams) -> TextResult:
        raise ModelCallError("overloaded", provider="down", retryable=True, status=503)

    async def up(params: TextParams) -> TextResult:
        return TextResult(text="ok", usage=Usage(input_tokens=5, output_tokens=2))

    models.register(ModelHandler(TEXT_LARGE, down, priority=1), owner="down")
    models.register(ModelHandler(TEXT_LARGE, up), owner="up")
    context = CallContext(agent_id=uuid4(), room_id=uuid4(), message_id=uuid4())
    token = call_context.set(context)
    try:
        await models.use_model(TEXT_LARGE, TextParams(prompt="hi"))
    finally:
        call_context.reset(token)
    await models.use_model(TEXT_LARGE, TextParams(prompt="again"), provider="up")
    assert len(seen) == 3
    failed, answered, named = seen
    assert failed.error is not None and failed.output is None and failed.agent_id is not None
    assert answered.fallback and answered.fallback_from == ("down",)
    assert answered.input_tokens == 5 and answered.output_tokens == 2
    assert named.agent_id is None and not named.fallback
    for payload in seen:
        fields: dict[str, Any] = {name: getattr(payload, name) for name in payload.model_fields_set}
        validated = ModelUsedPayload.model_validate(fields)
        assert payload == validated
        assert payload.model_dump() == validated.model_dump()
        assert payload.model_dump_json() == validated.model_dump_json()
        assert payload.model_fields_set == validated.model_fields_set
        with pytest.raises(Exception, match="frozen"):
            payload.provider = "changed"  # type: ignore[misc]


async def test_token_counts_of_an_untyped_usage_are_still_validated() -> None:
    bus = EventBus()
    seen: list[ModelUsedPayload] = []
    bus.on(MODEL_USED, seen.append)
    models = ModelRegistry(events=bus)

    async def odd(params: TextParams) -> TextResult:
        result = OddResult(text="ok")
        object.__setattr__(result, "usage", OddUsage())
        return result

    models.register(ModelHandler(TEXT_LARGE, odd), owner="odd")
    await models.use_model(TEXT_LARGE, TextParams(prompt="hi"))
    assert seen[0].input_tokens == 3 and type(seen[0].input_tokens) is int


@pytest.mark.parametrize("handler", ["plain", "coroutine", "failing"])
@pytest.mark.parametrize("through", ["host bus", "plugin handle"])
async def test_the_first_answer_is_reported_whatever_handles_model_used(
    handler: str, through: str
) -> None:
    """The host's bus runs plain ``model:used`` handlers (the metrics) without a coroutine; a
    coroutine handler, a failing one and a bus without that shortcut (a plugin's handle) get
    the same payload, and a handler's failure is reported, not raised into the model call."""
    bus = EventBus()
    seen: list[ModelUsedPayload] = []
    failures: list[HandlerFailedPayload] = []
    bus.on(HANDLER_FAILED, failures.append)

    def plain(payload: ModelUsedPayload) -> None:
        seen.append(payload)

    async def coroutine(payload: ModelUsedPayload) -> None:
        await asyncio.sleep(0)
        seen.append(payload)

    def failing(payload: ModelUsedPayload) -> None:
        seen.append(payload)
        raise RuntimeError("metrics broke")

    bus.on(MODEL_USED, {"plain": plain, "coroutine": coroutine, "failing": failing}[handler])
    models = ModelRegistry(events=bus if through == "host bus" else PluginBus(bus, "caller"))

    async def answer(params: TextParams) -> TextResult:
        return TextResult(text="ok")

    models.register(ModelHandler(TEXT_LARGE, answer), owner="local")
    result = await models.use_model(TEXT_LARGE, TextParams(prompt="hi"))
    assert [(p.provider, p.output, p.error) for p in seen] == [("local", result, None)]
    assert [f.error for f in failures] == (
        ["RuntimeError: metrics broke"] if handler == "failing" else []
    )
    assert bus.counts[MODEL_USED.name] == 1
