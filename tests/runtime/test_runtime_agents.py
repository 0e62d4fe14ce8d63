"""Several agents in one host: own character and agent-scoped services, shared app services."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from contracts.agent import AGENT_RUNTIME, CHARACTER, Character, Provider, ProviderResult, State
from contracts.memory import Memory, MemoryQuery
from contracts.storage import DATABASE
from contracts.tokens import Token
from host.agents import UnknownAgentError
from host.runtime import agent_id_for

from .runtime_helpers import Rig


class Greeter:
    """An agent-scoped service built from the agent's character."""

    def __init__(self, character: Character) -> None:
        self.name = character.name


GREETER: Token[Greeter] = Token("test.greeter", Greeter)


async def test_agents_have_own_scope_and_share_app_services(rig: Rig) -> None:
    rig.container.register(GREETER, Greeter, lifetime="scoped", scope="agent", owner="test")
    rig.agents.add_character(Character(name="Bob", bio=["builds things"]))
    bob = await rig.agents.start("bob")
    eliza = rig.agents.get("Eliza")
    assert bob is not eliza and bob.agent_id == agent_id_for("Bob") != eliza.agent_id
    assert bob.scope.resolve(CHARACTER).name == "Bob"
    assert eliza.scope.resolve(CHARACTER).name == "Eliza"
    assert bob.scope.resolve(AGENT_RUNTIME) is bob
    assert bob.scope.resolve(GREETER).name == "Bob"
    assert eliza.scope.resolve(GREETER).name == "Eliza"
    assert bob.scope.resolve(GREETER) is bob.scope.resolve(GREETER)
    assert await bob.scope.aresolve(DATABASE) is await eliza.scope.aresolve(DATABASE)
    assert sorted(r.name for r in rig.agents.running) == ["Bob", "Eliza"]


async def test_start_stop_independently_with_events(rig: Rig) -> None:
    rig.agents.add_character(Character(name="Bob"))
    await rig.agents.start("Bob")
    assert rig.names("agent:started")[-1] == "Bob"
    room = uuid4()
    await rig.agents.stop("Bob")
    assert rig.names("agent:stopped") == ["Bob"]
    with pytest.raises(UnknownAgentError, match="not running"):
        rig.agents.get("Bob")
    # Eliza is unaffected
    eliza = rig.agents.get("eliza")
    reply = await eliza.process_message(eliza.new_message("hello", room_id=room, entity_id=uuid4()))
    assert reply.responded
    # Bob restarts and keeps his identity (memories are keyed by the stable agent id)
    bob = await rig.agents.start("Bob")
    assert bob.agent_id == agent_id_for("Bob")
    assert rig.names("agent:started").count("Bob") == 2


async def test_agents_keep_separate_memories(rig: Rig) -> None:
    rig.agents.add_character(Character(name="Bob"))
    bob = await rig.agents.start("Bob")
    eliza = rig.agents.get("Eliza")
    room, user = uuid4(), uuid4()
    await bob.process_message(bob.new_message("to bob", room_id=room, entity_id=user))
    await eliza.process_message(eliza.new_message("to eliza", room_id=room, entity_id=user))
    bob_rows = await rig.db.get_memories(MemoryQuery(agent_id=bob.agent_id, order="asc"))
    assert next(r.content.text for r in bob_rows) == "to bob"
    assert all(r.agent_id == bob.agent_id for r in bob_rows)
    assert len(await bob.recent_memories(room)) == 2


async def test_unknown_agent_lists_known(rig: Rig) -> None:
    with pytest.raises(UnknownAgentError, match="known agents: Eliza"):
        await rig.agents.start("nobody")


async def test_stopped_agent_refuses_messages(rig: Rig) -> None:
    eliza = rig.agents.get("Eliza")
    await rig.agents.stop("Eliza")
    with pytest.raises(Exception, match="stopped"):
        await eliza.process_message(eliza.new_message("hi", room_id=uuid4(), entity_id=uuid4()))
    assert eliza.scope.closed


async def test_stop_all_reverse_order(rig: Rig) -> None:
    rig.agents.add_character(Character(name="Bob"))
    await rig.agents.start("Bob")
    await rig.agents.stop_all()
    assert rig.names("agent:stopped") == ["Bob", "Eliza"]
    assert rig.agents.running == []


async def test_a_start_while_stopping_waits_for_the_stop(rig: Rig) -> None:
    entered, gate = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def slow(message: Memory, state: State) -> ProviderResult:
        entered.set()
        await gate.wait()
        finished.append(message.content.text)
        return ProviderResult()

    rig.components.add("test", providers=[Provider("slow", slow, timeout=60)])
    old = rig.agents.get("Eliza")
    room = uuid4()
    first = asyncio.create_task(
        old.process_message(old.new_message("in progress", room_id=room, entity_id=uuid4()))
    )
    await entered.wait()
    stopping = asyncio.create_task(rig.agents.stop("Eliza"))
    await asyncio.sleep(0)
    assert not old.running
    starting = asyncio.create_task(rig.agents.start("Eliza"))
    for _ in range(100):  # event-loop turns, not time: ample for a start that does not wait
        await asyncio.sleep(0)
    assert not starting.done()  # a second runtime would serve the room alongside the old one
    again = asyncio.create_task(rig.agents.stop("Eliza"))  # a second stop waits as well
    await asyncio.sleep(0)
    assert not again.done()
    gate.set()
    await asyncio.gather(first, stopping, again)
    new = await starting
    assert new is not old and new.running and finished == ["in progress"]
    assert rig.names("agent:started") == ["Eliza", "Eliza"]
    assert [name for name, _ in rig.seen if name.startswith("agent:")][-2:] == [
        "agent:stopped",
        "agent:started",
    ]
