"""Replay and the recall and knowledge plugins' embeddings of the message: made through the
host's model runtime (not the replay's `RecordedModels`) and on their first message only, they
are repeats of the runtime's own call (same text, ``query``); a replay not seeing them does not
report "recorded text_embedding call not made", a recorded call of other params still is."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from uuid import uuid4

from contracts.agent import Reply
from contracts.eventstore import DomainEvent
from contracts.memory import Memory
from contracts.models import (
    TEXT_EMBEDDING,
    EmbeddingParams,
    EmbeddingResult,
    ModelHandler,
    ModelRuntime,
)
from host.events import EventBus
from host.eventstore.replay import Processor, ReplayParts, replay_conversation
from host.models import ModelRegistry


class _Store:
    """An `EventStore` reading only: the recorded events of one agent."""

    def __init__(self, events: list[DomainEvent]) -> None:
        self.events = events

    async def iter_events(self, aggregate_id: str) -> AsyncIterator[DomainEvent]:
        for e in self.events:
            yield e


def _event(position: int, event_type: str, data: dict[str, object], message: Memory) -> DomainEvent:
    return DomainEvent(
        id=uuid4(),
        aggregate_id=str(message.agent_id),
        version=position,
        event_type=event_type,
        data=data,
        position=position,
        correlation_id=message.id,
    )


def _embedding_used(position: int, message: Memory, text: str, kind: str) -> DomainEvent:
    params = {"text": text, "kind": kind, "model": None}
    output = {"usage": None, "model": "local"}  # the audit leaves the vectors out
    data = {"model_type": "text_embedding", "params": params, "output": output}
    return _event(position, "model:used", data, message)


def _registry(bus: EventBus) -> ModelRegistry:
    registry = ModelRegistry(events=bus)

    async def embed(params: EmbeddingParams) -> EmbeddingResult:
        return EmbeddingResult(vectors=[[1.0, 0.0]], model="local")

    registry.register(ModelHandler(TEXT_EMBEDDING, embed), owner="local")
    return registry


def _factory(host_models: ModelRuntime, calls: int) -> object:
    """A runtime embedding the message through the replay's models (as the runtime's
    save_memory does) and `calls` more times through the host's (as recall and knowledge do)."""

    class Runtime:
        def __init__(self, models: ModelRuntime) -> None:
            self.models = models

        async def process_message(self, message: Memory) -> Reply:
            text = message.content.text
            await self.models.use_model(TEXT_EMBEDDING, EmbeddingParams(text=text, kind="query"))
            for _ in range(calls):
                await host_models.use_model(
                    TEXT_EMBEDDING, EmbeddingParams(text=text, kind="query")
                )
            return Reply(
                agent_id=message.agent_id,
                room_id=message.room_id,
                message_id=message.id,
                responded=False,
            )

    @contextlib.asynccontextmanager
    async def make(parts: ReplayParts) -> AsyncIterator[Processor]:
        yield Runtime(parts.models)

    return make


def _recording(message: Memory, *calls: tuple[str, str]) -> _Store:
    """`message` received, then text_embedding calls (text, kind): by default the message's
    query three times (the runtime's, recall's and knowledge's, as ``agenthost chat`` records
    them)."""
    text = message.content.text
    calls = calls or ((text, "query"),) * 3
    received = _event(1, "message:received", {"message": message.model_dump(mode="json")}, message)
    used = [_embedding_used(2 + i, message, *call) for i, call in enumerate(calls)]
    return _Store([received, *used])


def _message() -> Memory:
    return Memory(
        agent_id=uuid4(), entity_id=uuid4(), room_id=uuid4(), content={"text": "Men are all alike."}
    )


async def test_recorded_repeats_of_a_call_made_are_not_missed() -> None:
    """Recall's and knowledge's embeddings of the message on the host's model runtime: the
    replay does not see them (and on the console's running host they are not made)."""
    message = _message()
    host_models = _registry(EventBus())
    for plugin_calls in (2, 0):
        report = await replay_conversation(
            _recording(message),  # type: ignore[arg-type]
            str(message.agent_id),
            _factory(host_models, plugin_calls),  # type: ignore[arg-type]
            fallback=host_models,
        )
        assert report.divergences == [], report.lines()
        assert report.ok


async def test_a_recorded_call_never_made_is_reported() -> None:
    message = _message()
    host_models = _registry(EventBus())
    text = message.content.text
    recording = _recording(message, (text, "query"), (text, "query"), ("In what way?", "passage"))
    report = await replay_conversation(
        recording,  # type: ignore[arg-type]
        str(message.agent_id),
        _factory(host_models, 2),  # type: ignore[arg-type]
        fallback=host_models,
    )
    assert [d.detail for d in report.divergences] == ["recorded text_embedding call not made"]
