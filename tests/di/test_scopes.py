"""App / agent / message scopes: visibility, overrides, per-scope instances, teardown."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from contracts.services import ScopeClosedError, ScopeError, ServiceReleaseError
from contracts.tokens import Token
from host.di import Container


class Connection:
    """A real SQLite connection opened in a file, closed on teardown."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("create table if not exists log (event text)")

    def log(self, event: str) -> None:
        self.db.execute("insert into log values (?)", (event,))
        self.db.commit()


class State:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn


PATH = Token("test.path", Path)
CONN = Token("test.conn", Connection)
STATE = Token("test.state", State)
NAME = Token("test.name", str)


def events(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("select event from log")]


async def open_connection(path: Path) -> AsyncIterator[Connection]:
    conn = Connection(path)
    conn.log("open")
    try:
        yield conn
    finally:
        conn.log("close")
        conn.db.close()


def test_child_scopes_open_in_order_only(container: Container) -> None:
    agent = container.create_scope("agent")
    message = agent.create_scope("message")
    assert (container.scope, agent.scope, message.scope) == ("app", "agent", "message")
    assert message.parent is agent and agent.parent is container
    with pytest.raises(ScopeError, match="cannot open a agent scope inside a message scope"):
        message.create_scope("agent")
    with pytest.raises(ScopeError, match="cannot open a message scope inside a message scope"):
        message.create_scope("message")
    with pytest.raises(ScopeError, match="unknown scope kind 'app'"):
        container.create_scope("app")  # type: ignore[arg-type]


async def test_child_sees_parent_bindings_and_can_override(container: Container) -> None:
    container.provide(NAME, "app")
    async with container.create_scope("agent") as agent:
        assert agent.resolve(NAME) == "app"
        agent.provide(NAME, "agent")
        assert agent.resolve(NAME) == "agent"
        async with agent.create_scope("message") as message:
            assert message.resolve(NAME) == "agent"
        async with container.create_scope("message") as sibling:
            assert sibling.resolve(NAME) == "app"
    assert container.resolve(NAME) == "app"


async def test_override_in_child_is_injected_into_child_built_services(
    container: Container, tmp_path: Path
) -> None:
    container.provide(PATH, tmp_path / "app.db")
    container.register(CONN, Connection, scope="agent")
    async with container.create_scope("agent") as one, container.create_scope("agent") as two:
        two.provide(PATH, tmp_path / "two.db")
        assert one.resolve(CONN) is one.resolve(CONN)
        assert one.resolve(CONN) is not two.resolve(CONN)
        two.resolve(CONN).log("hello")
    assert events(tmp_path / "two.db") == ["hello"]
    assert events(tmp_path / "app.db") == []


async def test_message_scoped_service_is_one_per_message(
    container: Container, tmp_path: Path
) -> None:
    container.provide(PATH, tmp_path / "m.db")
    container.register(CONN, open_connection, scope="message")
    container.register(STATE, State, lifetime="scoped", scope="message")
    seen: list[State] = []
    async with container.create_scope("agent") as agent:
        for _ in range(3):
            async with agent.create_scope("message") as message:
                state = await message.aresolve(STATE)
                assert await message.aresolve(STATE) is state
                seen.append(state)
    assert len({id(state) for state in seen}) == 3
    assert events(tmp_path / "m.db") == ["open", "close"] * 3


async def test_message_scoped_outside_a_message_scope_is_a_clear_error(
    container: Container,
) -> None:
    container.register(STATE, lambda: State(None), scope="message", owner="runtime")  # type: ignore[arg-type]
    with pytest.raises(ScopeError) as caught:
        container.resolve(STATE)
    assert str(caught.value) == (
        "service 'test.state' (plugin runtime) lives in the message scope, but no message scope"
        " is open here (resolving from the app scope); resolve it inside"
        " `async with container.create_scope('message')`"
    )
    async with container.create_scope("agent") as agent:
        with pytest.raises(ScopeError, match="resolving from the agent scope"):
            await agent.aresolve(STATE)


def test_longer_lived_service_cannot_hold_a_shorter_lived_one(container: Container) -> None:
    container.register(NAME, lambda: "per message", scope="message", owner="runtime")

    def make_state(name: str) -> State:
        return State(name)  # type: ignore[arg-type]

    container.register(STATE, make_state, scope="agent", owner="memory")
    message = container.create_scope("agent").create_scope("message")
    with pytest.raises(ScopeError) as caught:
        message.resolve(STATE)
    assert str(caught.value) == (
        "'test.state' (plugin memory) (singleton, agent scope) needs service 'test.name'"
        " (plugin runtime), which lives in the message scope: a longer-lived service cannot"
        " hold a shorter-lived one; make 'test.state' message-scoped or transient"
    )


async def test_transient_may_use_message_scoped_services(container: Container) -> None:
    container.register(NAME, lambda: "m", scope="message")

    def make_state(name: str) -> State:
        return State(name)  # type: ignore[arg-type]

    container.register(STATE, make_state, lifetime="transient")
    async with container.create_scope("message") as message:
        assert message.resolve(STATE).conn == "m"  # type: ignore[comparison-overlap]
        assert message.resolve(STATE) is not message.resolve(STATE)
    with pytest.raises(ScopeError) as caught:
        container.resolve(STATE)
    assert str(caught.value) == (
        "service 'test.name' (the host), needed by 'test.state', lives in the message scope, but"
        " no message scope is open here (resolving from the app scope); resolve it inside"
        " `async with container.create_scope('message')`"
    )


async def test_resources_are_released_in_reverse_order(container: Container) -> None:
    released: list[str] = []

    def resource(name: str):  # type: ignore[no-untyped-def]
        async def open_() -> AsyncIterator[str]:
            yield name
            released.append(name)

        return open_

    tokens = [Token(f"test.r{i}", str) for i in range(4)]
    for token in tokens:
        container.register(token, resource(token.name), scope="agent")
    async with container.create_scope("agent") as agent:
        for index in (2, 0, 3):
            await agent.aresolve(tokens[index])
    assert released == ["test.r3", "test.r0", "test.r2"]


async def test_resources_are_released_when_the_scope_body_fails(
    container: Container, tmp_path: Path
) -> None:
    container.provide(PATH, tmp_path / "e.db")
    container.register(CONN, open_connection, scope="message")
    with pytest.raises(RuntimeError, match="boom"):
        async with container.create_scope("message") as message:
            (await message.aresolve(CONN)).log("work")
            raise RuntimeError("boom")
    assert events(tmp_path / "e.db") == ["open", "work", "close"]


async def test_failed_teardown_does_not_stop_the_others(container: Container) -> None:
    released: list[str] = []

    async def good() -> AsyncIterator[str]:
        yield "good"
        released.append("good")

    async def bad() -> AsyncIterator[int]:
        yield 1
        raise OSError("disk gone")

    def sync_good() -> Iterator[bytes]:
        yield b"x"
        released.append("sync")

    container.register(NAME, good, scope="message")
    container.register(Token("test.bad", int), bad, scope="message", owner="flaky")
    container.register(Token("test.bytes", bytes), sync_good, scope="message")
    message = container.create_scope("message")
    await message.aresolve(NAME)
    await message.aresolve(Token("test.bad", int))
    message.resolve(Token("test.bytes", bytes))
    with pytest.raises(ServiceReleaseError) as caught:
        await message.aclose()
    assert released == ["sync", "good"]
    assert str(caught.value) == (
        "1 service(s) of the message scope failed to tear down: OSError: disk gone"
    )
    assert isinstance(caught.value.errors[0], OSError)


async def test_teardown_failure_after_a_body_error_keeps_the_body_error(
    container: Container,
) -> None:
    async def bad() -> AsyncIterator[int]:
        yield 1
        raise OSError("disk gone")

    container.register(Token("test.bad", int), bad, scope="message")
    with pytest.raises(KeyError):
        async with container.create_scope("message") as message:
            await message.aresolve(Token("test.bad", int))
            raise KeyError("body")


async def test_closing_a_parent_closes_open_children_first(container: Container) -> None:
    order: list[str] = []

    def tracked(label: str):  # type: ignore[no-untyped-def]
        async def open_() -> AsyncIterator[str]:
            yield label
            order.append(label)

        return open_

    container.register(Token("test.agent", str), tracked("agent"), scope="agent")
    container.register(Token("test.msg", str), tracked("message"), scope="message")
    agent = container.create_scope("agent")
    message = agent.create_scope("message")
    await agent.aresolve(Token("test.agent", str))
    await message.aresolve(Token("test.msg", str))
    await agent.aclose()
    assert order == ["message", "agent"]
    assert message.closed and agent.closed


async def test_closed_scope_refuses_use(container: Container) -> None:
    container.provide(NAME, "x")
    message = container.create_scope("message")
    assert message.resolve(NAME) == "x"
    await message.aclose()
    await message.aclose()  # idempotent
    with pytest.raises(ScopeClosedError, match="this message scope is closed"):
        message.resolve(NAME)
    with pytest.raises(ScopeClosedError):
        await message.aresolve(NAME)
    with pytest.raises(ScopeClosedError):
        message.provide(NAME, "y")


async def test_app_resources_are_released_by_aclose(tmp_path: Path) -> None:
    container = Container()
    container.provide(PATH, tmp_path / "app.db")
    container.register(CONN, open_connection)
    (await container.aresolve(CONN)).log("used")
    await container.aclose()
    assert events(tmp_path / "app.db") == ["open", "used", "close"]


async def test_concurrent_messages_get_their_own_instances(container: Container) -> None:
    made: list[int] = []

    async def per_message() -> AsyncIterator[int]:
        serial = len(made)
        made.append(serial)
        await asyncio.sleep(0)
        yield serial

    token = Token("test.counter", int)
    container.register(token, per_message, scope="message")

    async def handle() -> tuple[int, int]:
        async with container.create_scope("message") as message:
            first = await message.aresolve(token)
            await asyncio.sleep(0)
            return first, await message.aresolve(token)

    results = await asyncio.gather(*(handle() for _ in range(5)))
    assert all(a == b for a, b in results)
    assert sorted(a for a, _ in results) == [0, 1, 2, 3, 4]


async def test_unregister_releases_the_owners_resources(container: Container) -> None:
    released: list[str] = []

    async def resource() -> AsyncIterator[str]:
        yield "r"
        released.append("r")

    container.register(NAME, resource, owner="plug")
    assert await container.aresolve(NAME) == "r"
    await container.aunregister_owner("plug")
    assert released == ["r"]


async def test_unregister_outside_the_loop_defers_async_teardown_to_aclose() -> None:
    """E.g. a file watcher thread unloading a plugin: no running loop there to await on."""
    released: list[str] = []

    async def resource() -> AsyncIterator[str]:
        yield "r"
        released.append("r")

    container = Container()
    container.register(NAME, resource, owner="plug")
    assert await container.aresolve(NAME) == "r"
    await asyncio.to_thread(container.unregister_owner, "plug")
    assert released == []
    assert not container.has(NAME)
    await container.aclose()
    assert released == ["r"]


async def test_app_close_reports_teardown_failures() -> None:
    async def bad() -> AsyncIterator[str]:
        yield "x"
        raise OSError("flush failed")

    container = Container()
    container.register(NAME, bad, owner="flaky")
    await container.aresolve(NAME)
    with pytest.raises(ServiceReleaseError, match="1 service\\(s\\) of the app scope failed"):
        await container.aclose()
    assert container.closed
