"""Scope invariants under many shapes: per-scope identity, rebuilt dependencies, teardown order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.tokens import Token
from host.di import Container


class Config:
    def __init__(self, label: str = "default") -> None:
        self.label = label


class Session:
    """Per agent."""

    def __init__(self, config: Config) -> None:
        self.config = config


class Turn:
    """Per message, needs the agent's session."""

    def __init__(self, session: Session, config: Config) -> None:
        self.session = session
        self.config = config


CONFIG = Token("test.config", Config)
SESSION = Token("test.session", Session)
TURN = Token("test.turn", Turn)


def wired() -> Container:
    container = Container()
    container.register(CONFIG, Config, owner="base")
    container.register(SESSION, Session, scope="agent")
    container.register(TURN, Turn, lifetime="scoped", scope="message")
    return container


async def test_messages_use_their_own_agents_session() -> None:
    container = wired()
    one, two = container.create_scope("agent"), container.create_scope("agent")
    turns = []
    for _ in range(3):
        for agent in (one, two):
            async with agent.create_scope("message") as message:
                turn = message.resolve(TURN)
                assert turn is message.resolve(TURN)
                assert turn.session is agent.resolve(SESSION)
                turns.append(turn)
    assert len({id(turn) for turn in turns}) == 6
    assert one.resolve(SESSION) is not two.resolve(SESSION)
    await container.aclose()


async def test_rebinding_a_dependency_reaches_new_messages_of_open_agents() -> None:
    container = wired()
    agent = container.create_scope("agent")
    async with agent.create_scope("message") as message:
        assert message.resolve(TURN).config.label == "default"
    container.register(CONFIG, lambda: Config("override"), owner="better", priority=5)
    async with agent.create_scope("message") as message:
        turn = message.resolve(TURN)
        assert turn.config.label == "override"
        assert turn.session.config.label == "override"
    container.unregister_owner("better")
    async with agent.create_scope("message") as message:
        assert message.resolve(TURN).config.label == "default"
    await container.aclose()


async def test_an_override_in_one_message_stays_in_that_message() -> None:
    container = wired()
    agent = container.create_scope("agent")
    async with agent.create_scope("message") as message:
        assert message.resolve(TURN).config.label == "default"
    async with agent.create_scope("message") as message:
        message.provide(CONFIG, Config("only here"))
        assert message.resolve(TURN).config.label == "only here"
    async with agent.create_scope("message") as message:
        assert message.resolve(TURN).config.label == "default"
    await container.aclose()


scope_ops = st.lists(
    st.tuples(
        st.sampled_from(["open_agent", "open_message", "resolve", "close"]), st.integers(0, 3)
    ),
    max_size=40,
)


@settings(max_examples=80, deadline=None)
@given(scope_ops)
def test_every_resource_is_torn_down_once_in_reverse_order(ops: list[tuple[str, int]]) -> None:
    """Random scope trees: each set-up resource is torn down exactly once, and within a scope
    in reverse order of set-up; all are gone after the app closes."""
    events: list[tuple[str, int]] = []
    serial = iter(range(10_000))

    def resource(tag: str):  # type: ignore[no-untyped-def]
        async def open_() -> AsyncIterator[int]:
            number = next(serial)
            events.append(("up", number))
            yield number
            events.append(("down", number))

        return open_

    tokens = {
        "agent": [Token[int](f"test.agent{i}") for i in range(3)],
        "message": [Token[int](f"test.message{i}") for i in range(3)],
    }

    async def run() -> None:
        app = Container()
        for kind, kind_tokens in tokens.items():
            for token in kind_tokens:
                app.register(token, resource(kind), scope=kind)  # type: ignore[arg-type]
        open_scopes: list[Container] = []
        setups: dict[int, list[int]] = {}
        for op, arg in ops:
            if op == "open_agent":
                open_scopes.append(app.create_scope("agent"))
            elif op == "open_message":
                agents = [s for s in open_scopes if s.scope == "agent" and not s.closed]
                parent = agents[arg % len(agents)] if agents else app
                open_scopes.append(parent.create_scope("message"))
            elif op == "resolve" and open_scopes:
                scope = open_scopes[arg % len(open_scopes)]
                if scope.closed:
                    continue
                token = tokens[scope.scope][arg % 3]
                value = await scope.aresolve(token)
                setups.setdefault(id(scope), [])
                if value not in setups[id(scope)]:
                    setups[id(scope)].append(value)
            elif op == "close" and open_scopes:
                scope = open_scopes.pop(arg % len(open_scopes))
                if scope.closed:  # closed with its parent already
                    setups.pop(id(scope), None)
                    continue
                before = len(events)
                await scope.aclose()
                downs = [n for kind, n in events[before:] if kind == "down"]
                own = setups.pop(id(scope), [])
                # this scope's own resources come down last, newest first
                assert downs[len(downs) - len(own) :] == list(reversed(own))
        await app.aclose()

    asyncio.run(run())
    ups = [n for kind, n in events if kind == "up"]
    downs = [n for kind, n in events if kind == "down"]
    assert sorted(ups) == sorted(downs)
    assert len(set(downs)) == len(downs)
