"""OpenTelemetry spans (the otel extra) from a real host, caught by the SDK's in-memory
exporter: a span per message, one per pipeline stage under it, and the model calls under the
stage that made them, with the GenAI semantic conventions' names and attributes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import uuid4

import pytest

from contracts.models import TEXT_LARGE, ModelHandler, TextChunk, TextParams, TextResult
from host import tracing
from host.app import Host
from host.testing import OfflineHosts

sdk = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode  # noqa: E402


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_provider(None)


@pytest.fixture
async def host(offline_host: OfflineHosts) -> Host:
    return await offline_host()


def by_name(exporter: InMemorySpanExporter) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for span in exporter.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


async def test_message_stage_and_model_spans(host: Host, spans: InMemorySpanExporter) -> None:
    assert host.agents is not None
    runtime = host.agents.get("eliza")
    room = uuid4()
    reply = await runtime.process_message(
        runtime.new_message("I feel sad", room_id=room, entity_id=uuid4())
    )
    assert reply.responded
    found = by_name(spans)
    [root] = found["invoke_agent Eliza"]
    assert root.parent is None
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["gen_ai.agent.name"] == "Eliza"
    assert root.attributes["gen_ai.agent.id"] == str(runtime.agent_id)
    assert root.attributes["gen_ai.conversation.id"] == str(room)
    stages = {
        s.attributes["agenthost.stage"]: s
        for s in spans.get_finished_spans()
        if "agenthost.stage" in s.attributes
    }
    assert set(stages) == {"memory", "providers", "model", "actions", "evaluators"}
    for stage in stages.values():
        assert stage.parent.span_id == root.context.span_id
        assert root.start_time <= stage.start_time <= stage.end_time <= root.end_time
    [chat] = found["chat text_large"]
    assert chat.parent.span_id == stages["model"].context.span_id
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.system"] == "eliza"
    assert chat.kind.name == "CLIENT"
    assert (
        stages["model"].start_time <= chat.start_time <= chat.end_time <= stages["model"].end_time
    )
    embeddings = found["embeddings text_embedding"]
    assert embeddings and all(
        s.attributes["gen_ai.operation.name"] == "embeddings" for s in embeddings
    )
    memory_stages = [s.context.span_id for s in found["agenthost.stage memory"]]
    assert all(s.parent.span_id in memory_stages for s in embeddings)


async def test_a_streamed_reply_is_traced_too(host: Host, spans: InMemorySpanExporter) -> None:
    assert host.agents is not None
    runtime = host.agents.get("eliza")
    stream = runtime.stream_message(
        runtime.new_message("Hello there", room_id=uuid4(), entity_id=uuid4())
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(chunks) and stream.reply is not None
    found = by_name(spans)
    [root] = found["invoke_agent Eliza"]
    [chat] = found["chat text_large"]
    [model] = found["agenthost.stage model"]
    assert model.parent.span_id == root.context.span_id
    assert chat.parent.span_id == model.context.span_id


async def test_a_stream_that_fails_partway_ends_its_spans_with_an_error(
    host: Host, spans: InMemorySpanExporter
) -> None:
    """The model's stream breaks after its first chunk: the message's span and the model
    stage's still end (are exported), with an error status naming the failure."""

    async def whole(params: TextParams) -> TextResult:
        raise AssertionError("the stream is asked for, not the whole text")

    async def broken(params: TextParams) -> AsyncIterator[TextChunk]:
        yield TextChunk(text="Hello, ")
        raise ConnectionResetError("the model server hung up")

    host.models.register(ModelHandler(TEXT_LARGE, whole, broken, priority=10_000), owner="test")
    assert host.agents is not None
    runtime = host.agents.get("eliza")
    stream = runtime.stream_message(
        runtime.new_message("Hello there", room_id=uuid4(), entity_id=uuid4())
    )
    chunks: list[str] = []
    with pytest.raises(Exception, match="hung up"):
        async for chunk in stream:
            chunks.append(chunk)
    assert "".join(chunks).startswith("Hello,")  # the first chunk came through
    found = by_name(spans)
    [root] = found["invoke_agent Eliza"]
    assert root.status.status_code is StatusCode.ERROR and "hung up" in root.status.description
    assert root.attributes["error.type"]
    [model] = found["agenthost.stage model"]
    assert model.parent.span_id == root.context.span_id
    assert model.status.status_code is StatusCode.ERROR


async def test_no_provider_no_spans(host: Host) -> None:
    assert tracing.tracer() is None  # no global provider set in the suite
    assert host.agents is not None
    runtime = host.agents.get("eliza")
    reply = await runtime.process_message(
        runtime.new_message("hi", room_id=uuid4(), entity_id=uuid4())
    )
    assert reply.responded
