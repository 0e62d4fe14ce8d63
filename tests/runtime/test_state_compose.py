"""State composition's shape: providers run in parallel (all but the last in tasks, the last in
the composing task), each under its own timeout, through the provider cache."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from contracts.agent import CachePolicy, Provider, ProviderResult, State
from contracts.config import CacheSettings
from contracts.memory import Content, Memory
from host.cache import ProviderCache
from host.components import ComponentRegistry
from host.state import StateComposer
from host.test_doubles import composer_alone

AGENT = uuid.uuid4()


def message() -> Memory:
    return Memory(
        id=uuid.uuid4(),
        agent_id=AGENT,
        room_id=uuid.uuid4(),
        entity_id=uuid.uuid4(),
        content=Content(text="hi"),
    )


def composer(*providers: Provider) -> StateComposer:
    cache = ProviderCache(CacheSettings())
    components = ComponentRegistry(cache)
    components.add("test", providers=providers)
    return composer_alone(components, cache, agent_id=AGENT)


def answer(text: str) -> Provider:
    async def get(message: Memory, state: State) -> ProviderResult:
        await asyncio.sleep(0)
        return ProviderResult(text=text, values={text: True})

    return Provider(text, get, cache=CachePolicy(ttl=60, scope="message"))


def hang(name: str, started: list[str], cancelled: list[str], timeout: float = 0.05) -> Provider:
    async def get(message: Memory, state: State) -> ProviderResult:
        started.append(name)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(name)
            raise
        return ProviderResult()

    return Provider(name, get, timeout=timeout, cache=CachePolicy(ttl=60, scope="message"))


@pytest.mark.parametrize("slow_at", [0, 1, 2])
async def test_a_slow_provider_is_skipped_wherever_it_runs(slow_at: int) -> None:
    """The slow one times out alone whether it runs in a task or in the composing task."""
    started: list[str] = []
    cancelled: list[str] = []
    providers = [answer("a"), answer("b")]
    providers.insert(slow_at, hang("slow", started, cancelled))
    state = await composer(*providers).compose(message())
    assert state.skipped == {"slow": "timed out after 0.05s"}
    assert set(state.providers) == {"recent_messages", "a", "b"}
    assert state.values["a"] is True and state.values["b"] is True
    assert cancelled == ["slow"]


async def test_providers_in_tasks_each_get_their_own_timeout() -> None:
    """The tasks share one timer: each slow provider is dropped at its own deadline, not the
    first one's, and a provider slower than the first deadline but within its own is kept."""
    started: list[str] = []
    cancelled: list[str] = []

    async def late(message: Memory, state: State) -> ProviderResult:
        await asyncio.sleep(0.1)
        return ProviderResult(text="late")

    loop = asyncio.get_running_loop()
    begun = loop.time()
    state = await composer(
        hang("short", started, cancelled, 0.05),
        hang("long", started, cancelled, 0.2),
        Provider("late", late, timeout=1.0),
        answer("inline"),
    ).compose(message())
    took = loop.time() - begun
    assert state.skipped == {"short": "timed out after 0.05s", "long": "timed out after 0.2s"}
    assert state.text == "inline\n\nlate"  # same position: by name
    assert cancelled == ["short", "long"]
    assert 0.2 <= took < 1.0


async def test_cancelling_the_composition_cancels_every_provider() -> None:
    started: list[str] = []
    cancelled: list[str] = []
    states = composer(hang("x", started, cancelled), hang("y", started, cancelled))
    task = asyncio.create_task(states.compose(message()))
    for _ in range(3):
        await asyncio.sleep(0)
    assert sorted(started) == ["x", "y"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert sorted(cancelled) == ["x", "y"]


async def test_outcomes_keep_their_positions() -> None:
    early = Provider("early", answer("early").get, position=-1)
    state = await composer(answer("late"), early).compose(message())
    assert state.text == "early\n\nlate"
