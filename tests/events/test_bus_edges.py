"""The bus at its edges: changes during an emit, cancellation, timeouts, detached failures."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.config import EventsSettings
from contracts.events import (
    AGENT_STARTED,
    AGENT_STOPPED,
    HANDLER_FAILED,
    AgentPayload,
    Event,
    EventError,
    EventPayload,
    HandlerFailedPayload,
)
from host.events import EventBus, HandlerSubscription
from host.handles import PluginBus

STARTED = AgentPayload(agent_id=uuid4(), name="eliza")


async def test_a_handler_removed_during_an_emit_does_not_run_in_it() -> None:
    bus = EventBus()
    seen: list[str] = []

    def later(payload: AgentPayload) -> None:
        seen.append("later")

    def remover(payload: AgentPayload) -> None:
        seen.append("remover")
        bus.off(AGENT_STARTED, later)
        bus.unregister_owner("doomed")

    bus.on(AGENT_STARTED, remover, priority=1)
    bus.on(AGENT_STARTED, later)
    bus.on(AGENT_STARTED, lambda p: seen.append("plugin"), owner="doomed")
    bus.on_any(lambda e, p: seen.append("plugin-any"), owner="doomed")
    bus.on(AGENT_STARTED, lambda p: seen.append("kept"))
    await bus.emit(AGENT_STARTED, STARTED)
    assert seen == ["remover", "kept"]


async def test_a_handler_added_during_an_emit_runs_from_the_next_emit() -> None:
    bus = EventBus()
    seen: list[str] = []

    def adder(payload: AgentPayload) -> None:
        seen.append("adder")
        bus.on(AGENT_STARTED, lambda p: seen.append("added"), priority=-1)

    bus.on(AGENT_STARTED, adder)
    await bus.emit(AGENT_STARTED, STARTED)
    assert seen == ["adder"]
    seen.clear()
    bus.off(AGENT_STARTED, adder)
    await bus.emit(AGENT_STARTED, STARTED)
    assert seen == ["added"]


async def test_cancelling_the_emitter_propagates_and_is_no_handler_failure() -> None:
    bus = EventBus(EventsSettings(handler_timeout=10))
    entered = asyncio.Event()
    after: list[str] = []

    async def hangs(payload: AgentPayload) -> None:
        entered.set()
        await asyncio.sleep(60)

    bus.on(AGENT_STARTED, hangs)
    bus.on(AGENT_STARTED, lambda p: after.append("next"))
    task = asyncio.create_task(bus.emit(AGENT_STARTED, STARTED))
    await entered.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1)
    assert done and task.cancelled()
    assert bus.failures == 0 and after == []


@pytest.mark.parametrize("handler_timeout", [10.0, None], ids=["timed", "untimed"])
@pytest.mark.parametrize("detached", [False, True], ids=["awaited", "detached"])
async def test_a_cancelled_error_of_the_handlers_own_is_its_failure_not_the_emitters(
    handler_timeout: float | None, detached: bool
) -> None:
    """A handler awaiting a job that was cancelled gets a CancelledError that is no
    cancellation of the emitting task: it is that handler's failure, and the other plugins'
    handlers and the emitter carry on."""
    bus = EventBus(EventsSettings(handler_timeout=handler_timeout))
    failures: list[HandlerFailedPayload] = []
    bus.on(HANDLER_FAILED, failures.append)
    seen: list[str] = []

    async def awaits_a_cancelled_job(payload: AgentPayload) -> None:
        job = asyncio.get_running_loop().create_future()
        job.cancel()
        await job

    bus.on(AGENT_STARTED, awaits_a_cancelled_job, owner="flaky", priority=1, detached=detached)
    bus.on(AGENT_STARTED, lambda p: seen.append("steady"), owner="steady")
    await bus.emit(AGENT_STARTED, STARTED)
    assert await bus.drain(within=2)
    assert seen == ["steady"]
    assert [(f.plugin, f.timed_out, f.error) for f in failures] == [
        ("flaky", False, "CancelledError")
    ]


async def test_nested_emits_whose_deadlines_expire_together_report_the_outer_handler() -> None:
    """Two deadlines expiring in one sweep cancel the task once; the inner handler must pass the
    cancellation on so the outer one times out too, instead of hanging past its limit."""
    bus = EventBus(EventsSettings(handler_timeout=0.3))
    failures: list[HandlerFailedPayload] = []
    bus.on(HANDLER_FAILED, failures.append)

    async def inner(payload: AgentPayload) -> None:
        await asyncio.sleep(30)

    async def outer(payload: AgentPayload) -> None:
        await bus.emit(AGENT_STOPPED, payload)
        await asyncio.sleep(30)

    bus.on(AGENT_STARTED, outer, owner="outer")
    bus.on(AGENT_STOPPED, inner, owner="inner")
    started = time.monotonic()
    await asyncio.wait_for(bus.emit(AGENT_STARTED, STARTED), 5)
    assert time.monotonic() - started < 2
    assert [f.plugin for f in failures if f.timed_out][-1] == "outer"


async def test_a_subscription_timeout_overrides_the_default() -> None:
    bus = EventBus(EventsSettings(handler_timeout=None))
    failures: list[HandlerFailedPayload] = []
    bus.on(HANDLER_FAILED, failures.append)

    async def slow(payload: AgentPayload) -> None:
        await asyncio.sleep(30)

    bus.on(AGENT_STARTED, slow, owner="sloth", timeout=0.05)
    await asyncio.wait_for(bus.emit(AGENT_STARTED, STARTED), 2)
    assert [(f.plugin, f.timed_out, f.error) for f in failures] == [("sloth", True, "timed out")]


async def test_detached_failures_and_timeouts_are_reported_like_awaited_ones() -> None:
    bus = EventBus()
    failures: list[HandlerFailedPayload] = []
    bus.on(HANDLER_FAILED, failures.append)

    async def broken(payload: AgentPayload) -> None:
        raise ValueError("bad city")

    async def slow(payload: AgentPayload) -> None:
        await asyncio.sleep(30)

    bus.on(AGENT_STARTED, broken, owner="weather", detached=True)
    bus.on(AGENT_STARTED, slow, owner="sloth", detached=True, timeout=0.05)
    await bus.emit(AGENT_STARTED, STARTED)
    assert await bus.drain(within=2)
    by_plugin = {f.plugin: f for f in failures}
    assert by_plugin["weather"].error == "ValueError: bad city"
    assert not by_plugin["weather"].timed_out
    assert by_plugin["sloth"].timed_out and bus.pending == 0


async def test_after_close_detached_handlers_run_awaited_so_none_is_left_behind() -> None:
    bus = EventBus()
    done: list[str] = []

    async def background(payload: AgentPayload) -> None:
        await asyncio.sleep(0.01)
        done.append(payload.name)

    bus.on(AGENT_STOPPED, background, detached=True)
    await bus.aclose()
    await bus.emit(AGENT_STOPPED, STARTED)  # e.g. agent:stopped emitted during shutdown
    assert done == ["eliza"] and bus.pending == 0


async def test_wildcard_handlers_get_every_event_including_plugin_events() -> None:
    class PingPayload(EventPayload):
        n: int

    ping = Event("test-edges:ping", PingPayload)
    bus = EventBus()
    seen: list[tuple[str, str]] = []
    bus.on_any(lambda e, p: seen.append((e.name, type(p).__name__)))
    await bus.emit(ping, PingPayload(n=1))
    await bus.emit(AGENT_STARTED, STARTED)
    assert seen == [("test-edges:ping", "PingPayload"), ("agent:started", "AgentPayload")]


async def test_off_matches_bound_methods_and_counts_emits() -> None:
    class Listener:
        def __init__(self) -> None:
            self.calls = 0

        def handle(self, payload: AgentPayload) -> None:
            self.calls += 1

    bus = EventBus()
    listener = Listener()
    bus.on(AGENT_STARTED, listener.handle)
    await bus.emit(AGENT_STARTED, STARTED)
    assert bus.off(AGENT_STARTED, listener.handle)  # a new bound-method object, equal
    await bus.emit(AGENT_STARTED, STARTED)
    assert listener.calls == 1 and bus.counts["agent:started"] == 2


async def test_counts_survive_subscriptions_changed_during_and_between_emits() -> None:
    """Each plan counts its own emits; a plan dropped (a subscription changed, even by a
    handler of the emit running with it, or the default timeout changed) keeps its count."""
    bus = EventBus()

    async def first(payload: AgentPayload) -> None:
        bus.on(AGENT_STARTED, third)  # the plan running this emit is dropped meanwhile

    async def third(payload: AgentPayload) -> None:
        pass

    bus.on(AGENT_STARTED, first)
    await bus.emit(AGENT_STARTED, STARTED)
    await bus.emit(AGENT_STARTED, STARTED)
    bus.settings = EventsSettings(handler_timeout=5.0)
    await bus.emit(AGENT_STARTED, STARTED)
    await bus.emit(AGENT_STOPPED, STARTED)
    assert bus.counts == {"agent:started": 3, "agent:stopped": 1}
    assert len(bus.subscriptions(AGENT_STARTED)) == 4


async def test_listing_subscriptions_and_a_plugins_off_keep_the_counts() -> None:
    """`subscriptions(event)` (which a plugin's ``off`` calls too) rebuilt the event's plan
    and dropped its count: ``agenthost.events.emitted`` must only go up."""
    bus = EventBus()
    handle = PluginBus(bus, "counted")

    def listener(payload: AgentPayload) -> None:
        pass

    handle.on(AGENT_STARTED, listener)
    for _ in range(5):
        await bus.emit(AGENT_STARTED, STARTED)
    assert len(bus.subscriptions(AGENT_STARTED)) == 1
    assert bus.counts["agent:started"] == 5
    assert handle.subscriptions(AGENT_STARTED) and bus.counts["agent:started"] == 5
    await bus.emit(AGENT_STARTED, STARTED)
    assert handle.off(AGENT_STARTED, listener)
    assert bus.counts["agent:started"] == 6
    await bus.emit(AGENT_STARTED, STARTED)
    assert bus.subscriptions(AGENT_STARTED) == [] and bus.counts["agent:started"] == 7


# a model of subscribe / cancel / unload / emit ------------------------------------------------


@dataclass(frozen=True)
class Subscribe:
    priority: int
    owner: str | None


@dataclass(frozen=True)
class Cancel:
    index: int


@dataclass(frozen=True)
class Unload:
    owner: str


@dataclass(frozen=True)
class Emit:
    pass


owners = st.sampled_from([None, "a", "b"])
operations = st.lists(
    st.one_of(
        st.builds(Subscribe, st.integers(-2, 2), owners),
        st.builds(Cancel, st.integers(0, 20)),
        st.builds(Unload, st.sampled_from(["a", "b"])),
        st.just(Emit()),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(operations)
def test_an_emit_runs_exactly_the_live_subscriptions_in_priority_then_registration_order(
    ops: list[Subscribe | Cancel | Unload | Emit],
) -> None:
    bus = EventBus()
    ran: list[int] = []
    subs: list[tuple[HandlerSubscription, Subscribe]] = []
    live: dict[int, Subscribe] = {}

    async def play() -> None:
        for op in ops:
            if isinstance(op, Subscribe):
                index = len(subs)
                sub = bus.on(
                    AGENT_STARTED, lambda p, i=index: ran.append(i), priority=op.priority,
                    owner=op.owner,
                )  # fmt: skip
                subs.append((sub, op))
                live[index] = op
            elif isinstance(op, Cancel) and op.index < len(subs):
                subs[op.index][0].cancel()
                live.pop(op.index, None)
            elif isinstance(op, Unload):
                removed = bus.unregister_owner(op.owner)
                gone = [i for i, s in live.items() if s.owner == op.owner]
                assert removed == len(gone)
                for i in gone:
                    del live[i]
            elif isinstance(op, Emit):
                ran.clear()
                await bus.emit(AGENT_STARTED, STARTED)
                assert ran == sorted(live, key=lambda i: (-live[i].priority, i))
        assert {id(s) for s in bus.subscriptions(AGENT_STARTED)} == {id(subs[i][0]) for i in live}
        assert all(sub.active == (i in live) for i, (sub, _) in enumerate(subs))

    asyncio.run(play())


async def test_detached_handlers_emitting_while_all_slots_are_taken_do_not_deadlock() -> None:
    """A detached handler that emits its own event again (a fact extractor writing a memory on
    memory:created): with every slot taken, the nested run goes inline instead of waiting."""
    bus = EventBus(EventsSettings(detached_limit=2))
    depths: list[int] = []

    class Depth(EventPayload):
        n: int

    chain = Event("test-edges:chain", Depth)

    async def cascade(payload: Depth) -> None:
        await asyncio.sleep(0)
        depths.append(payload.n)
        if payload.n < 6:
            await bus.emit(chain, Depth(n=payload.n + 1))
            await bus.emit(chain, Depth(n=payload.n + 1))

    bus.on(chain, cascade, detached=True)
    await bus.emit(chain, Depth(n=0))
    assert await bus.drain(within=5)
    assert len(depths) == 2**7 - 1 and bus.failures == 0


async def test_drain_waits_for_detached_runs_started_by_detached_runs() -> None:
    """A detached handler that emits spawns new detached runs while drain waits: drain waits
    for those too, and reports False when they outlast its limit."""
    bus = EventBus()

    class Hop(EventPayload):
        n: int

    hop = Event("test-edges:hop", Hop)
    reached: list[int] = []
    gate = asyncio.Event()

    async def relay(payload: Hop) -> None:
        await asyncio.sleep(0.01)
        reached.append(payload.n)
        if payload.n < 3:
            await bus.emit(hop, Hop(n=payload.n + 1))
        elif payload.n == 3:
            await gate.wait()

    bus.on(hop, relay, detached=True)
    await bus.emit(hop, Hop(n=0))
    assert not await bus.drain(within=0.3)  # hop 3 waits on the gate
    assert reached == [0, 1, 2, 3] and bus.pending == 1
    gate.set()
    assert await bus.drain(within=2)
    assert bus.pending == 0


async def test_bad_subscriptions_are_refused_naming_the_event_and_the_plugin() -> None:
    bus = EventBus()
    with pytest.raises(EventError, match=r"'agent:started' \(plugin weather\) is not callable"):
        bus.on(AGENT_STARTED, "handler", owner="weather")  # type: ignore[arg-type]
    for timeout in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(EventError, match=r"'agent:started' \(plugin weather\): timeout must"):
            bus.on(AGENT_STARTED, lambda p: None, owner="weather", timeout=timeout)
    with pytest.raises(EventError, match=r"every event \(on_any\): timeout must"):
        bus.on_any(lambda e, p: None, timeout=-2)
    with pytest.raises(EventError, match="needs an Event token"):
        bus.on("agent:started", lambda p: None)  # type: ignore[call-overload,arg-type]
    assert bus.subscriptions() == []
