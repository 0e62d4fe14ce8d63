"""State composition's shape: providers run in parallel (all but the last in tasks, the last in
the composing task), each under its own timeout, through the provider cache; the builtin history
provider starts in the composing task (no timer and no task while it does not wait) and goes on
there when it waits, the plugins' providers in tasks meanwhile."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from contracts.agent import CachePolicy, Provider, ProviderResult, State
from contracts.config import CacheSettings
from contracts.memory import Content, Memory
from contracts.storage import MemoryText
from host.cache import ProviderCache
from host.components import ComponentRegistry
from host.state import RecentTexts, StateComposer
from host.test_doubles import composer_alone

AGENT = uuid.uuid4()


async def no_history(room: uuid.UUID, count: int) -> list[MemoryText]:
    return []


def message() -> Memory:
    return Memory(
        id=uuid.uuid4(),
        agent_id=AGENT,
        room_id=uuid.uuid4(),
        entity_id=uuid.uuid4(),
        content=Content(text="hi"),
    )


def composer(
    *providers: Provider, recent: RecentTexts = no_history, timeout: float = 5.0
) -> StateComposer:
    cache = ProviderCache(CacheSettings())
    components = ComponentRegistry(cache)
    components.add("test", providers=providers)
    return composer_alone(
        components, cache, agent_id=AGENT, provider_timeout=timeout, recent=recent
    )


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


def line(text: str) -> MemoryText:
    return MemoryText(uuid.uuid4(), uuid.uuid4(), text)


async def test_a_history_read_at_once_costs_no_timer_and_no_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The history answered without waiting (the SQLite store's inline read) runs in the
    composing task with no timer (its timeout could not fire before it waits) and no task; a
    plugin's provider after it keeps its own timeout (the last one, in the composing task)."""

    async def at_once(room: uuid.UUID, count: int) -> list[MemoryText]:
        return [line("earlier")]

    async def now(message: Memory, state: State) -> ProviderResult:
        return ProviderResult(text="now", values={"now": True})

    loop = asyncio.get_running_loop()
    timers: list[float] = []
    call_at = loop.call_at

    def counted(when: float, *args: object, **kwargs: object) -> asyncio.TimerHandle:
        timers.append(when)
        return call_at(when, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "call_at", counted)
    tasks = len(asyncio.all_tasks())
    for plugins, timed in (((), 0), ((Provider("now", now),), 1)):
        timers.clear()
        task = asyncio.ensure_future(composer(*plugins, recent=at_once).compose(message()))
        await asyncio.sleep(0)  # one step of the composing task: all of it
        assert task.done() and len(asyncio.all_tasks()) == tasks
        state = task.result()
        expected = "# Recent conversation\nuser: earlier" + ("\n\nnow" if plugins else "")
        assert state.text == expected and state.skipped == {}
        assert len(timers) == timed


@pytest.mark.parametrize("plugins", [0, 1, 2])
async def test_a_history_read_that_waits_runs_under_its_timeout(plugins: int) -> None:
    """A history read that waits goes on in the composing task under the provider timeout,
    counted from its start, while the plugins' providers run (each in a task then)."""

    async def stuck(room: uuid.UUID, count: int) -> list[MemoryText]:
        await asyncio.Event().wait()
        return []

    names = ["a", "b"][:plugins]
    loop = asyncio.get_running_loop()
    begun = loop.time()
    state = await composer(*(answer(n) for n in names), recent=stuck, timeout=0.05).compose(
        message()
    )
    assert state.skipped == {"recent_messages": "timed out after 0.05s"}
    assert state.text == "\n\n".join(names)
    assert 0.05 <= loop.time() - begun < 1.0


async def test_a_history_read_that_waits_runs_beside_the_plugins() -> None:
    """The history read waits for what a plugin's provider does: both run at once, and the
    outcomes keep their positions (the history first)."""
    seen = asyncio.Event()

    async def waits(room: uuid.UUID, count: int) -> list[MemoryText]:
        await seen.wait()
        await asyncio.sleep(0)
        return [line("earlier")]

    async def sets(message: Memory, state: State) -> ProviderResult:
        await asyncio.sleep(0)
        seen.set()
        return ProviderResult(text="plugin")

    state = await composer(Provider("sets", sets), answer("b"), recent=waits).compose(message())
    assert state.text == "# Recent conversation\nuser: earlier\n\nb\n\nplugin"
    assert state.skipped == {}


async def test_cancelling_while_the_history_waits_cancels_it_and_the_plugins() -> None:
    started: list[str] = []
    cancelled: list[str] = []

    async def waits(room: uuid.UUID, count: int) -> list[MemoryText]:
        started.append("history")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append("history")
            raise
        return []

    states = composer(hang("x", started, cancelled), recent=waits)
    task = asyncio.create_task(states.compose(message()))
    for _ in range(3):
        await asyncio.sleep(0)
    assert sorted(started) == ["history", "x"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert sorted(cancelled) == ["history", "x"]


async def test_a_history_read_that_fails_at_once_or_later_is_skipped() -> None:
    async def fails_now(room: uuid.UUID, count: int) -> list[MemoryText]:
        raise RuntimeError("store gone")

    async def fails_later(room: uuid.UUID, count: int) -> list[MemoryText]:
        await asyncio.sleep(0)
        raise RuntimeError("store gone")

    for recent in (fails_now, fails_later):
        state = await composer(answer("a"), recent=recent).compose(message())
        assert state.skipped == {"recent_messages": "RuntimeError: store gone"}
        assert state.text == "a"
