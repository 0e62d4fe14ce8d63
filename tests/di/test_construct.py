"""Constructor injection: annotations, explicit tokens, optional params, extras, errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Annotated, Protocol

import pytest
from pydantic import BaseModel

from contracts.services import InjectionError, MissingDependencyError, ScopeError
from contracts.storage import DATABASE, DatabaseAdapter
from contracts.tokens import Token
from host.di import Container


class KeyValue(Protocol):
    def get(self, key: str) -> str | None: ...
    def put(self, key: str, value: str) -> None: ...


class SqliteKeyValue:
    """A real key-value store in a SQLite file."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("create table if not exists kv (k text primary key, v text)")

    def get(self, key: str) -> str | None:
        row = self.db.execute("select v from kv where k = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, value: str) -> None:
        self.db.execute("insert or replace into kv values (?, ?)", (key, value))
        self.db.commit()


class Clock:
    def now(self) -> float:
        return 1.0


class Metrics:
    pass


class WeatherSettings(BaseModel):
    city: str = "Lisbon"


KV = Token("test.kv", KeyValue)
BACKUP_KV = Token[KeyValue]("test.backup_kv")
CLOCK = Token("test.clock", Clock)
METRICS_LIKE = Token("test.metrics", Metrics)
PATH = Token("test.path", Path)


class Weather:
    def __init__(
        self,
        kv: KeyValue,
        backup: Annotated[KeyValue, BACKUP_KV],
        settings: WeatherSettings,
        clock: Clock | None = None,
        metrics: Metrics | None = None,
        retries: int = 3,
    ) -> None:
        self.kv = kv
        self.backup = backup
        self.settings = settings
        self.clock = clock
        self.metrics = metrics
        self.retries = retries


@pytest.fixture
def wired(container: Container, tmp_path: Path) -> Container:
    container.register(KV, lambda: SqliteKeyValue(tmp_path / "kv.db"), owner="sqlite")
    container.register(BACKUP_KV, lambda: SqliteKeyValue(tmp_path / "backup.db"), owner="sqlite")
    container.register(CLOCK, Clock, owner="time")
    return container


async def test_construct_injects_by_type_token_extras_and_defaults(wired: Container) -> None:
    settings = WeatherSettings(city="Porto")
    weather = await wired.construct(Weather, owner="weather", extras={WeatherSettings: settings})
    assert weather.kv is wired.resolve(KV)
    assert weather.backup is wired.resolve(BACKUP_KV)
    assert weather.backup is not weather.kv
    assert weather.settings is settings
    assert weather.clock is wired.resolve(CLOCK)
    assert weather.metrics is None
    assert weather.retries == 3
    weather.kv.put("city", weather.settings.city)
    assert wired.resolve(KV).get("city") == "Porto"


async def test_extras_keyed_by_token_win_over_the_container(wired: Container) -> None:
    mine = Clock()
    weather = await wired.construct(
        Weather, owner="weather", extras={WeatherSettings: WeatherSettings(), CLOCK: mine}
    )
    assert weather.clock is mine


async def test_missing_dependency_message(container: Container) -> None:
    container.register(CLOCK, Clock, owner="time")
    container.register(METRICS_LIKE, Metrics)
    with pytest.raises(MissingDependencyError) as caught:
        await container.construct(Weather, owner="weather")
    assert str(caught.value) == (
        "plugin weather needs KeyValue (parameter `kv` of Weather.__init__), provided by"
        " nothing; installed providers: test.clock (time), test.metrics (host)"
    )


async def test_missing_explicit_token_message(container: Container) -> None:
    container.register(KV, SqliteKeyValue)
    container.provide(PATH, Path("unused.db"))
    with pytest.raises(MissingDependencyError) as caught:
        await container.construct(Weather, owner="weather")
    assert str(caught.value) == (
        "plugin weather needs token 'test.backup_kv' (parameter `backup` of Weather.__init__),"
        " provided by nothing; installed providers: test.kv (host), test.path (host)"
    )


async def test_missing_settings_object_message(wired: Container) -> None:
    with pytest.raises(MissingDependencyError) as caught:
        await wired.construct(Weather, owner="weather")
    assert str(caught.value).startswith(
        "plugin weather needs WeatherSettings (parameter `settings` of Weather.__init__),"
        " provided by nothing; installed providers: test.backup_kv (sqlite), test.clock (time),"
    )


async def test_unannotated_parameter_is_an_injection_error(container: Container) -> None:
    class Legacy:
        def __init__(self, db) -> None:  # type: ignore[no-untyped-def]
            self.db = db

    with pytest.raises(InjectionError) as caught:
        await container.construct(Legacy, owner="legacy")
    assert str(caught.value) == (
        "parameter `db` of test_unannotated_parameter_is_an_injection_error.<locals>.Legacy"
        ".__init__ has no annotation: annotate it with the type to inject"
        " (`db: DatabaseAdapter`) or a token (`db: Annotated[DatabaseAdapter, DATABASE]`)"
    )


async def test_type_matching_several_tokens_is_ambiguous(container: Container) -> None:
    class Needs:
        def __init__(self, kv: KeyValue) -> None:
            self.kv = kv

    container.declare_tokens([KV, Token("test.other_kv", KeyValue)])
    with pytest.raises(InjectionError) as caught:
        await container.construct(Needs, owner="needs")
    assert str(caught.value) == (
        "parameter `kv` of test_type_matching_several_tokens_is_ambiguous.<locals>.Needs.__init__"
        " (plugin needs): type KeyValue matches several tokens (test.kv, test.other_kv); say"
        " which with Annotated[KeyValue, TOKEN]"
    )


async def test_unresolvable_forward_reference_is_explained(container: Container) -> None:
    class Broken:
        def __init__(self, thing: NotImportedAnywhere) -> None:  # type: ignore[name-defined]  # noqa: F821
            self.thing = thing

    with pytest.raises(InjectionError, match="name 'NotImportedAnywhere' is not defined"):
        await container.construct(Broken, owner="broken")


async def test_constructing_with_a_message_scoped_need_outside_a_message(
    container: Container,
) -> None:
    class PerMessage:
        def __init__(self, clock: Clock) -> None:
            self.clock = clock

    container.register(CLOCK, Clock, scope="message", owner="time")
    with pytest.raises(ScopeError) as caught:
        await container.construct(PerMessage, owner="pm")
    assert str(caught.value).startswith(
        "plugin pm (parameter `clock` of test_constructing_with_a_message_scoped_need_outside"
        "_a_message.<locals>.PerMessage.__init__): service 'test.clock' (plugin time) lives in"
        " the message scope, but no message scope is open here"
    )
    async with container.create_scope("message") as message:
        built = await message.construct(PerMessage, owner="pm")
        assert built.clock is message.resolve(CLOCK)


async def test_positional_only_and_keyword_only_parameters(wired: Container) -> None:
    class Mixed:
        def __init__(self, clock: Clock, /, *, kv: KeyValue, label: str = "x") -> None:
            self.clock, self.kv, self.label = clock, kv, label

    mixed = await wired.construct(Mixed, owner="mixed")
    assert mixed.clock is wired.resolve(CLOCK)
    assert mixed.kv is wired.resolve(KV)
    assert mixed.label == "x"


async def test_async_dependencies_are_awaited_for_construct(container: Container) -> None:
    async def make_clock() -> Clock:
        return Clock()

    class NeedsClock:
        def __init__(self, clock: Clock) -> None:
            self.clock = clock

    container.register(CLOCK, make_clock)
    built = await container.construct(NeedsClock, owner="n")
    assert built.clock is await container.aresolve(CLOCK)


def test_requirements_lists_tokens_for_load_ordering(container: Container) -> None:
    # Only explicit tokens until the others are known (registered or declared).
    assert container.requirements(Weather) == [BACKUP_KV]
    container.register(KV, SqliteKeyValue)
    assert container.requirements(Weather) == [KV, BACKUP_KV]
    container.declare_tokens([CLOCK, METRICS_LIKE])
    assert container.requirements(Weather) == [KV, BACKUP_KV, CLOCK, METRICS_LIKE]


def test_requirements_know_the_well_known_tokens() -> None:
    class NeedsDb:
        def __init__(self, db: DatabaseAdapter, cache_size: int = 10) -> None:
            self.db = db

    assert Container().requirements(NeedsDb) == [DATABASE]
