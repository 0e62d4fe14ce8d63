"""The registry's fallback is never silent: the reason, the warning, the caller's mark; an
agent's preferred provider and model names; a name not served does not open the circuit."""

from __future__ import annotations

import io
from typing import Any
from uuid import uuid4

from contracts.events import MODEL_USED, ModelUsedPayload
from contracts.models import (
    TEXT_LARGE,
    ModelCallError,
    ModelHandler,
    ModelSettings,
    TextParams,
    TextResult,
)
from host.events import EventBus
from host.models import CallContext, ModelRegistry, call_context, reason_of


def handler(name: str, error: Exception | None = None, seen: list[Any] | None = None) -> Any:
    async def answer(params: TextParams) -> TextResult:
        if seen is not None:
            seen.append(params.model)
        if error is not None:
            raise error
        return TextResult(text=name)

    return answer


def context(**prefs: Any) -> CallContext:
    return CallContext(uuid4(), uuid4(), uuid4(), **prefs)


async def call(registry: ModelRegistry, caller: CallContext) -> str:
    token = call_context.set(caller)
    try:
        return (await registry.use_model(TEXT_LARGE, TextParams(prompt="x"))).text
    finally:
        call_context.reset(token)


def test_reasons() -> None:
    assert reason_of(ModelCallError("x", provider="p", retryable=True, status=429)) == (
        "rate_limited"
    )
    assert reason_of(ModelCallError("x", provider="p", retryable=True, status=503)) == (
        "server_error"
    )
    given = ModelCallError("x", provider="p", retryable=True, reason="model_not_served")
    assert reason_of(given) == "model_not_served"
    odd = ModelCallError("x", provider="p", retryable=True, reason="not a word!")
    assert reason_of(odd) == "error"
    assert reason_of(TimeoutError()) == "timeout" and reason_of(ConnectionError()) == (
        "unreachable"
    )


async def test_an_open_circuit_is_a_marked_fallback_too(logs: io.StringIO) -> None:
    bus = EventBus()
    used: list[ModelUsedPayload] = []
    bus.on(MODEL_USED, used.append)
    registry = ModelRegistry(ModelSettings(breaker_failures=1), events=bus)
    failure = ModelCallError("HTTP 503", provider="remote", retryable=True, status=503)
    registry.register(ModelHandler(TEXT_LARGE, handler("remote", failure)), owner="remote")
    registry.register(ModelHandler(TEXT_LARGE, handler("local"), priority=-100), owner="local")
    first, second = context(), context()
    assert await call(registry, first) == "local"
    assert await call(registry, second) == "local"  # remote skipped: its circuit is open
    assert [m.reason for m in first.fallbacks] == ["server_error"]
    assert [m.as_dict() for m in second.fallbacks] == [
        {"from": "remote", "to": "local", "reason": "circuit_open", "model_type": "text_large"}
    ]
    assert [(u.provider, u.fallback_reason) for u in used] == [
        ("remote", None),
        ("local", "server_error"),
        ("local", "circuit_open"),
    ]
    assert logs.getvalue().count("(fallback)") == 2


async def test_a_name_not_served_does_not_open_the_circuit() -> None:
    registry = ModelRegistry(ModelSettings(breaker_failures=1))
    seen: list[Any] = []

    async def remote(params: TextParams) -> TextResult:
        seen.append(params.model)
        if params.model != "good":
            raise ModelCallError("no", provider="remote", retryable=True, reason="model_not_served")
        return TextResult(text="remote")

    registry.register(ModelHandler(TEXT_LARGE, remote), owner="remote")
    registry.register(ModelHandler(TEXT_LARGE, handler("local"), priority=-100), owner="local")
    assert await call(registry, context(model_names={"text_large": "bad"})) == "local"
    assert await call(registry, context(model_names={"text_large": "good"})) == "remote"
    assert seen == ["bad", "good"]


async def test_a_preferred_provider_goes_first_and_an_unknown_one_is_said(
    logs: io.StringIO,
) -> None:
    registry = ModelRegistry()
    registry.register(ModelHandler(TEXT_LARGE, handler("a"), priority=5), owner="a")
    registry.register(ModelHandler(TEXT_LARGE, handler("b")), owner="b")
    assert await call(registry, context()) == "a"
    assert await call(registry, context(provider="b")) == "b"
    assert await call(registry, context(provider="anthropic")) == "a"
    assert await call(registry, context(provider="anthropic")) == "a"
    warned = [x for x in logs.getvalue().splitlines() if "modelProvider" in x]
    assert warned == [
        "WARNING an agent's modelProvider is 'anthropic', which has no text_large handler:"
        " a answers instead (registered: a, b)"
    ]
    # a call naming its provider is not overridden by the agent's preference
    token = call_context.set(context(provider="b"))
    try:
        named = await registry.use_model(TEXT_LARGE, TextParams(prompt="x"), provider="a")
    finally:
        call_context.reset(token)
    assert named.text == "a"
