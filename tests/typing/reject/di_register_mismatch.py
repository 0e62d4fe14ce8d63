"""register()/provide()/Service: the factory must build what the token names."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Protocol

from contracts.services import Service
from contracts.tokens import Token
from host.di import Container


class DatabaseAdapter(Protocol):
    def get(self, key: str) -> bytes: ...


class NotADatabase:
    def put(self, key: str) -> None: ...


DATABASE_LIKE: Token[DatabaseAdapter] = Token("database_like", DatabaseAdapter)
NAME = Token("name", str)


def make_text() -> str:
    return ""


async def make_number() -> int:
    return 1


async def open_wrong() -> AsyncIterator[NotADatabase]:
    yield NotADatabase()


def open_text() -> Iterator[str]:
    yield ""


container = Container()
container.register(DATABASE_LIKE, make_text)  # E: Argument 2 to "register" of "Container" has incompatible type "Callable[[], str]"
container.register(DATABASE_LIKE, make_number)  # E: incompatible type "Callable[[], Coroutine[Any, Any, int]]"
container.register(DATABASE_LIKE, open_wrong)  # E: Argument 2 to "register" of "Container" has incompatible type
container.register(DATABASE_LIKE, NotADatabase)  # E: incompatible type "type[NotADatabase]"
container.register(NAME, lambda: 3)  # E: has incompatible type "Callable[[], int]"; expected "Callable[..., str] |
container.register(DATABASE_LIKE, open_text, lifetime="scoped")  # E: incompatible type "Callable[[], Iterator[str]]"
container.register(NAME, make_text, lifetime="forever")  # E: Argument "lifetime" to "register" of "Container" has incompatible type "Literal['forever']"
container.register(NAME, make_text, scope="request")  # E: Argument "scope" to "register" of "Container" has incompatible type "Literal['request']"
container.provide(NAME, 3)  # E: Cannot infer value of type parameter "T" of "provide"

services = [
    Service(DATABASE_LIKE, make_text),  # E: Argument 2 to "Service" has incompatible type "Callable[[], str]"
    Service(NAME, open_wrong, lifetime="scoped", scope="message"),  # E: Argument 2 to "Service" has incompatible type
]
bad_token: Token[int] = Token("bad", str)  # E: Argument 2 to "Token" has incompatible type "type[str]"; expected "Callable[..., int]"
