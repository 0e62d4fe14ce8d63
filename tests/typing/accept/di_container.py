"""The container's typed API accepts correct uses and infers the token's type."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, Protocol, assert_type

from contracts import (
    CACHE,
    DATABASE,
    EVENT_STORE,
    EVENTS,
    LOGGER,
    METRICS,
    MODELS,
    SETTINGS,
    EventBusProtocol,
    EventStore,
    HostConfig,
    Logger,
    MetricsCollector,
    ModelRuntime,
    ProviderCacheProtocol,
)
from contracts import (
    DatabaseAdapter as RealDatabaseAdapter,
)
from contracts.services import Service
from contracts.tokens import Token
from host.di import Container


class DatabaseAdapter(Protocol):
    def get(self, key: str) -> bytes: ...


class SqliteAdapter:
    def __init__(self, path: str = ":memory:") -> None:
        self.path = path

    def get(self, key: str) -> bytes:
        return key.encode()


DATABASE_LIKE: Token[DatabaseAdapter] = Token("database_like", DatabaseAdapter)
SUBSCRIPTED = Token[DatabaseAdapter]("subscripted")
NAME = Token("name", str)
NAMES = Token("names", list[str])
UNTYPED: Token[int] = Token("untyped")

assert_type(DATABASE_LIKE, Token[DatabaseAdapter])
assert_type(SUBSCRIPTED, Token[DatabaseAdapter])
assert_type(NAME, Token[str])
assert_type(NAMES, Token[list[str]])


def make_db() -> SqliteAdapter:
    return SqliteAdapter()


async def make_db_async() -> SqliteAdapter:
    return SqliteAdapter()


async def open_db() -> AsyncIterator[SqliteAdapter]:
    yield SqliteAdapter()


def open_db_sync() -> Iterator[DatabaseAdapter]:
    yield SqliteAdapter()


container = Container()
container.register(DATABASE_LIKE, SqliteAdapter)
container.register(DATABASE_LIKE, make_db, lifetime="transient")
container.register(DATABASE_LIKE, make_db_async, owner="sqlite", priority=10)
container.register(DATABASE_LIKE, open_db, lifetime="scoped", scope="message")
container.register(DATABASE_LIKE, open_db_sync, scope="agent")
container.register(DATABASE_LIKE, lambda: SqliteAdapter("x.db"))
container.register(NAME, lambda: "agenthost")
container.register(NAMES, list)
container.provide(DATABASE_LIKE, SqliteAdapter())
container.provide(NAME, "x", owner="config")

assert_type(container.resolve(DATABASE_LIKE), DatabaseAdapter)
assert_type(container.resolve(SUBSCRIPTED), DatabaseAdapter)
assert_type(container.resolve(NAME), str)
assert_type(container.resolve(UNTYPED), int)
assert_type(container.requirements(SqliteAdapter), list[Token[Any]])

# The well-known tokens resolve to their contract types.
assert_type(container.resolve(DATABASE), RealDatabaseAdapter)
assert_type(container.resolve(LOGGER), Logger)
assert_type(container.resolve(SETTINGS), HostConfig)
assert_type(container.resolve(MODELS), ModelRuntime)
assert_type(container.resolve(EVENTS), EventBusProtocol)
assert_type(container.resolve(EVENT_STORE), EventStore)
assert_type(container.resolve(CACHE), ProviderCacheProtocol)
assert_type(container.resolve(METRICS), MetricsCollector)

services: list[Service[Any]] = [
    Service(DATABASE_LIKE, SqliteAdapter),
    Service(DATABASE_LIKE, open_db, lifetime="scoped", scope="message", priority=5),
    Service(NAME, lambda: "n"),
]
assert_type(Service(DATABASE_LIKE, make_db), Service[DatabaseAdapter])


class Weather:
    def __init__(
        self,
        db: DatabaseAdapter,
        other: Annotated[DatabaseAdapter, SUBSCRIPTED],
        name: str | None = None,
    ) -> None:
        self.db = db


async def use() -> None:
    assert_type(await container.aresolve(DATABASE_LIKE), DatabaseAdapter)
    async with container.create_scope("agent") as agent:
        assert_type(agent, Container)
        async with agent.create_scope("message") as message:
            assert_type(message.resolve(NAME), str)
    weather = await container.construct(Weather, owner="weather", extras={str: "x"})
    assert_type(weather, Weather)
    await container.aclose()
