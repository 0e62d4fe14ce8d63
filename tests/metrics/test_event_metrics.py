"""Events become metrics: the names and tags operators query."""

from __future__ import annotations

from uuid import uuid4

from contracts.events import (
    ACTION_COMPLETED,
    MESSAGE_SENT,
    MODEL_USED,
    PLUGIN_FAILED,
    PLUGIN_RELOADED,
    ActionCompletedPayload,
    MessagePayload,
    ModelUsedPayload,
    PluginFailedPayload,
    PluginReloadedPayload,
)
from contracts.memory import Content, Memory
from host.metrics import InMemoryMetrics
from host.metrics.events import (
    ACTION_DURATION,
    ACTION_EXECUTIONS,
    MESSAGES_PROCESSED,
    MODEL_DURATION,
    MODEL_ERRORS,
    MODEL_FALLBACKS,
    MODEL_TOKENS,
    RELOADS,
    STAGE_DURATION,
    EventMetrics,
)


def test_model_calls_follow_the_genai_conventions() -> None:
    metrics = InMemoryMetrics()
    record = EventMetrics(metrics)
    ok = ModelUsedPayload(
        model_type="text_large", provider="eliza", duration=0.01, input_tokens=12, output_tokens=5
    )
    failed = ModelUsedPayload(
        model_type="text_large", provider="openai", duration=0.2, error="TimeoutError: slow"
    )
    fallback = ok.model_copy(update={"fallback": True})
    for payload in (ok, failed, fallback):
        record(MODEL_USED, payload)

    base = {"gen_ai.operation.name": "chat", "agenthost.model.type": "text_large"}
    assert metrics.total(MODEL_DURATION, **base, **{"gen_ai.system": "eliza"}) == 2
    assert metrics.total(MODEL_ERRORS, **{"error.type": "TimeoutError"}) == 1
    assert metrics.total(MODEL_FALLBACKS, **{"gen_ai.system": "eliza"}) == 1
    inputs = metrics.get(
        MODEL_TOKENS, **base, **{"gen_ai.system": "eliza", "gen_ai.token.type": "input"}
    )
    assert inputs is not None and inputs.count == 2 and inputs.value == 24


def test_an_error_without_a_class_name_is_typed_error() -> None:
    metrics = InMemoryMetrics()
    record = EventMetrics(metrics)
    for error in ("", "the provider said no"):
        record(
            MODEL_USED, ModelUsedPayload(model_type="t", provider="p", duration=0.1, error=error)
        )
    assert metrics.total(MODEL_ERRORS, **{"error.type": "error"}) == 2
    assert metrics.total(MODEL_DURATION, **{"error.type": "error"}) == 2


def test_operation_names_come_from_the_model_type() -> None:
    from contracts.models import ModelType, TextParams, TextResult

    ModelType("test_caption", TextParams, TextResult)  # a plugin's type, no operation declared
    metrics = InMemoryMetrics()
    record = EventMetrics(metrics)
    for model_type in ("text_embedding", "object_small", "test_caption", "never_declared"):
        record(MODEL_USED, ModelUsedPayload(model_type=model_type, provider="p", duration=0.1))
    operations = {
        s.tags["agenthost.model.type"]: s.tags["gen_ai.operation.name"]
        for s in metrics.series(MODEL_DURATION)
    }
    assert operations == {
        "text_embedding": "embeddings",
        "object_small": "chat",
        "test_caption": "test_caption",
        "never_declared": "never_declared",
    }


def test_actions_and_pipeline_stages() -> None:
    metrics = InMemoryMetrics()
    record = EventMetrics(metrics)
    ids = {"agent_id": uuid4(), "room_id": uuid4(), "entity_id": uuid4()}
    for success in (True, True, False):
        record(
            ACTION_COMPLETED,
            ActionCompletedPayload(
                **ids, message_id=uuid4(), action="REPLY", plugin="core", success=success,
                duration=0.5, error=None if success else "boom",
            ),
        )  # fmt: skip
    reply = Memory(**ids, content=Content(text="hi"))
    record(
        MESSAGE_SENT,
        MessagePayload(**ids, message=reply, timings={"model": 0.25, "total": 0.5}),
    )
    assert metrics.total(ACTION_EXECUTIONS, action="REPLY", success="true") == 2
    assert metrics.total(ACTION_DURATION, success="false") == 1
    assert metrics.total(MESSAGES_PROCESSED) == 1
    model_stage = metrics.get(STAGE_DURATION, stage="model")
    assert model_stage is not None and model_stage.value == 0.25


def test_reloads_count_successes_and_failures() -> None:
    metrics = InMemoryMetrics()
    record = EventMetrics(metrics)
    record(PLUGIN_RELOADED, PluginReloadedPayload(name="weather", duration=0.12))
    record(PLUGIN_FAILED, PluginFailedPayload(name="weather", stage="reload", error="SyntaxError"))
    record(PLUGIN_FAILED, PluginFailedPayload(name="other", stage="setup", error="x"))
    assert metrics.total(RELOADS, plugin="weather", outcome="ok") == 1
    assert metrics.total(RELOADS, plugin="weather", outcome="error") == 1
    assert metrics.total(RELOADS) == 2


async def test_subscribed_to_its_events_only_and_after_their_other_handlers() -> None:
    from host.events import EventBus

    bus = EventBus()
    metrics = InMemoryMetrics()
    seen_before: list[float] = []
    bus.on(MODEL_USED, lambda payload: seen_before.append(metrics.total(MODEL_DURATION)))
    subscriptions = EventMetrics(metrics).subscribe(bus, owner="host")
    assert len(subscriptions) == 7
    assert {s.event.name for s in bus.subscriptions() if s.owner == "host" and s.event} == {
        "message:received",
        "message:sent",
        "action:completed",
        "model:used",
        "handler:failed",
        "plugin:reloaded",
        "plugin:failed",
    }
    used = ModelUsedPayload(model_type="text_large", provider="eliza", duration=0.01)
    await bus.emit(MODEL_USED, used)
    await bus.emit(MODEL_USED, used)
    assert seen_before == [0, 1]  # the metrics handler ran after the plain one, each time
    assert metrics.total(MODEL_DURATION) == 2
    assert bus.unregister_owner("host") == 7
