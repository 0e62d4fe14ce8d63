"""resolve() is typed by the token: assigning its result to another type is an error."""

from __future__ import annotations

from typing import Protocol

from contracts.config import SETTINGS
from contracts.storage import DATABASE, DatabaseAdapter as RealDatabaseAdapter
from contracts.tokens import Token
from host.di import Container


class DatabaseAdapter(Protocol):
    def get(self, key: str) -> bytes: ...


DATABASE_LIKE: Token[DatabaseAdapter] = Token("database_like", DatabaseAdapter)
COUNT = Token("count", int)

container = Container()
x: str = container.resolve(DATABASE_LIKE)  # E: Incompatible types in assignment (expression has type "DatabaseAdapter", variable has type "str")
n: str = container.resolve(COUNT)  # E: expression has type "int", variable has type "str"
container.resolve(DATABASE_LIKE).put(b"x")  # E: "DatabaseAdapter" has no attribute "put"
real: str = container.resolve(DATABASE)  # E: expression has type "DatabaseAdapter", variable has type "str"
port: str = container.resolve(SETTINGS).http.port  # E: expression has type "int", variable has type "str"
container.register(DATABASE, lambda: "not a database")  # E: Argument 2 to "register" of "Container" has incompatible type
adapter: RealDatabaseAdapter = container.resolve(SETTINGS)  # E: expression has type "HostConfig", variable has type "DatabaseAdapter"


async def later() -> None:
    y: int = await container.aresolve(DATABASE_LIKE)  # E: Argument 1 to "aresolve" of "Container" has incompatible type "Token[DatabaseAdapter]"; expected "Token[int]"
    del y


class Weather:
    def __init__(self, db: DatabaseAdapter) -> None:
        self.db = db


async def build() -> None:
    weather: DatabaseAdapter = await container.construct(Weather, owner="weather")  # E: Argument 1 to "construct" of "Container" has incompatible type "type[Weather]"
    del weather
    container.create_scope("request")  # E: Argument 1 to "create_scope" of "Container" has incompatible type "Literal['request']"
