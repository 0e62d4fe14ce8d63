"""``model:used`` payloads built without re-validation equal the validated ones in every case."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from contracts.events import MODEL_USED, ModelUsedPayload
from contracts.models import (
    TEXT_LARGE,
    ModelCallError,
    ModelHandler,
    TextParams,
    TextResult,
    Usage,
)
from host.events import EventBus
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
