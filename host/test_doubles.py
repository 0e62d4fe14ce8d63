"""The test kit's doubles: clocks, ids, mock models and an event recorder.

They make a `TestRuntime` deterministic (the same memories on every run) and let a test replace a
model or watch the bus; `host.testing` exports them, so plugin authors import them from there.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from loguru import logger
from pydantic import BaseModel

from contracts.agent import Character
from contracts.cache import ProviderCacheProtocol
from contracts.events import Event, EventPayload
from contracts.models import (
    EmbeddingParams,
    EmbeddingResult,
    ModelParams,
    ModelType,
    ObjectResult,
    TextChunk,
    TextParams,
    TextResult,
)
from contracts.storage import MemoryText
from host.components import ComponentRegistry
from host.events import EventBus, HandlerSubscription
from host.state import RecentTexts, StateComposer

__all__ = [
    "EventRecorder",
    "ManualClock",
    "MockModel",
    "SequentialIds",
    "StepClock",
    "composer_alone",
]

P = TypeVar("P", bound=EventPayload)
Embedder = Callable[[EmbeddingParams], Awaitable[EmbeddingResult]]
Reply_ = str | BaseModel | Callable[[Any], Any]


@dataclass
class StepClock:
    """A clock that advances by `step` on every read, from `start`."""

    start: datetime = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    step: timedelta = timedelta(seconds=1)
    reads: int = 0

    def __call__(self) -> datetime:
        now = self.start + self.step * self.reads
        self.reads += 1
        return now


@dataclass
class ManualClock:
    """Seconds that pass only when the test says so: the provider cache's TTL clock in tests.

    Cached provider results never expire on their own in a test (a slow machine cannot change
    what a test sees); `advance` moves past a TTL on purpose.
    """

    now: float = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class SequentialIds:
    """UUIDs ``...0001``, ``...0002``, ...: readable in failures, the same on every run."""

    prefix: int = 0xA6E7
    counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __call__(self) -> UUID:
        return UUID(int=(self.prefix << 112) | next(self.counter))


class MockModel:
    """A model handler answering from `replies`: one reply for every call, a list used in turn
    (the last one repeats), or a function of the params. Records every call's params."""

    def __init__(
        self,
        model_type: ModelType[Any, Any],
        replies: Reply_ | Sequence[Reply_],
        *,
        embedder: Embedder | None = None,
    ):
        self.model_type = model_type
        self.embedder = embedder
        """Embeds the texts of an embedding call whose reply is no `EmbeddingResult` (the
        test kit passes the default model plugin's)."""
        self.replies: list[Reply_] = (
            list(replies) if isinstance(replies, list | tuple) else [replies]  # type: ignore[list-item]
        )
        self.calls: list[Any] = []

    @property
    def prompts(self) -> list[str]:
        """The prompt text of each text call (the last user message for chat calls)."""
        out = []
        for params in self.calls:
            if isinstance(params, TextParams):
                out.append(
                    params.prompt or (params.messages[-1].content if params.messages else "")
                )
        return out

    async def __call__(self, params: ModelParams) -> Any:
        index = min(len(self.calls), len(self.replies) - 1)
        self.calls.append(params)
        reply = self.replies[index]
        value = reply(params) if callable(reply) else reply
        if isinstance(value, Awaitable):
            value = await value
        return await _as_result(self.model_type, value, params, self.embedder)

    async def stream(self, params: ModelParams) -> AsyncIterator[TextChunk]:
        """The same reply streamed word by word (one recorded call), so streamed replies come
        in several chunks as from a real model."""
        result = await self(params)
        words = re.findall(r"\s*\S+\s*", result.text) or [result.text]
        for index, word in enumerate(words):
            last = index == len(words) - 1
            yield TextChunk(text=word, index=index, finish_reason="stop" if last else None)


async def _as_result(
    model_type: ModelType[Any, Any], value: Any, params: Any, embedder: Embedder | None
) -> Any:
    if isinstance(value, model_type.result):
        return value
    if model_type.result is TextResult:
        return TextResult(text=str(value), finish_reason="stop", model="mock")
    if model_type.result is EmbeddingResult and embedder is not None:
        if not isinstance(params, EmbeddingParams):
            params = EmbeddingParams(text=str(value))
        return EmbeddingResult(vectors=(await embedder(params)).vectors, model="mock")
    if model_type.result is ObjectResult and isinstance(value, Mapping):
        return ObjectResult(data=dict(value))
    raise TypeError(
        f"mock for {model_type.name} returned {type(value).__name__}; "
        f"return a {model_type.result.__name__}"
    )


class EventRecorder:
    """Every event emitted while it listens, in order, with typed accessors."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.seen: list[tuple[Event[Any], EventPayload]] = []
        self._subscription: HandlerSubscription | None = bus.on_any(self._record)

    def _record(self, event: Event[Any], payload: EventPayload) -> None:
        self.seen.append((event, payload))

    def of(self, event: Event[P]) -> list[P]:
        """The payloads of `event`, typed."""
        return [p for e, p in self.seen if e.name == event.name]  # type: ignore[misc]

    def names(self) -> list[str]:
        return [e.name for e, _ in self.seen]

    def assert_emitted(self, event: Event[Any], times: int | None = None) -> None:
        count = sum(1 for e, _ in self.seen if e.name == event.name)
        if (times is None and count == 0) or (times is not None and count != times):
            expected = "at least once" if times is None else f"{times} times"
            raise AssertionError(
                f"{event.name} emitted {count} times, expected {expected}; seen: {self.names()}"
            )

    def assert_order(self, *events: Event[Any]) -> None:
        """Each event happened, in this order (others may come in between)."""
        names = self.names()
        position = 0
        for event in events:
            try:
                position = names.index(event.name, position) + 1
            except ValueError:
                raise AssertionError(
                    f"{event.name} not emitted after position {position}; seen: {names}"
                ) from None

    def clear(self) -> None:
        self.seen.clear()

    def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None

    def __enter__(self) -> EventRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class _StateSettings:
    provider_timeout: float
    history: int


async def _no_history(room: UUID, count: int) -> list[MemoryText]:
    return []


def composer_alone(
    components: ComponentRegistry,
    cache: ProviderCacheProtocol | None = None,
    *,
    agent_id: UUID | None = None,
    provider_timeout: float = 5.0,
    recent: RecentTexts | None = None,
) -> StateComposer:
    """A `StateComposer` of `components`' providers for an agent "Eliza" with no stored history
    (or the one `recent` reads) and no runtime: the composition alone, for its tests and
    bench/providers.py."""
    return StateComposer(
        agent_id=agent_id or UUID(int=1),
        character=Character(name="Eliza"),
        components=components,
        settings=_StateSettings(provider_timeout, history=10),
        recent=recent or _no_history,
        cache=cache,
        log=logger,
    )
