"""The container as the loader's registrar: plugins' services(), priorities, pins, unloading."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pytest
from pydantic import BaseModel

from contracts.plugin import Manifest, Plugin
from contracts.services import InjectionError, MissingDependencyError, Service
from contracts.tokens import Token
from host.di import Container


class KeyValue(Protocol):
    backend: str

    def get(self, key: str) -> str | None: ...
    def put(self, key: str, value: str) -> None: ...


class SqliteKeyValue:
    backend = "sqlite"

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("create table if not exists kv (k text primary key, v text)")

    def get(self, key: str) -> str | None:
        row = self.db.execute("select v from kv where k = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, value: str) -> None:
        self.db.execute("insert or replace into kv values (?, ?)", (key, value))
        self.db.commit()

    def close(self) -> None:
        self.db.close()


class DictKeyValue:
    backend = "memory"

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def put(self, key: str, value: str) -> None:
        self.data[key] = value


STORE = Token("test.kvstore", KeyValue)
DATA_DIR = Token("test.data_dir", Path)


@dataclass
class Loaded:
    """What the loader hands to registrars."""

    manifest: Manifest
    instance: Plugin


def loaded(plugin: Plugin) -> Loaded:
    return Loaded(type(plugin).manifest, plugin)


class SqliteStorePlugin(Plugin):
    manifest: ClassVar[Manifest] = Manifest(name="sqlstore", priority=100, provides=(STORE,))
    closed: ClassVar[list[str]] = []

    def services(self) -> Sequence[Service[Any]]:
        return [Service(STORE, self.open_store)]

    async def open_store(self, data_dir: Path) -> AsyncIterator[KeyValue]:
        store = SqliteKeyValue(data_dir / "kv.db")
        yield store
        store.close()
        self.closed.append("sqlstore")


class MemoryStorePlugin(Plugin):
    manifest: ClassVar[Manifest] = Manifest(name="memstore", priority=10, provides=(STORE,))

    def services(self) -> Sequence[Service[Any]]:
        return [Service(STORE, DictKeyValue)]


class NotesSettings(BaseModel):
    prefix: str = "note:"


class NotesPlugin(Plugin):
    manifest: ClassVar[Manifest] = Manifest(name="notes", settings=NotesSettings)

    def __init__(self, store: KeyValue, settings: NotesSettings) -> None:
        self.store = store
        self.settings = settings

    def remember(self, key: str, text: str) -> None:
        self.store.put(self.settings.prefix + key, text)


@pytest.fixture
def app(container: Container, tmp_path: Path) -> Container:
    container.provide(DATA_DIR, tmp_path)
    return container


async def test_plugin_services_are_bound_with_its_name_and_priority(app: Container) -> None:
    app.register_plugin(loaded(MemoryStorePlugin()))
    app.register_plugin(loaded(SqliteStorePlugin()))
    infos = {info.owner: info for info in app.bindings() if info.token == "test.kvstore"}
    assert infos["sqlstore"].priority == 100 and infos["sqlstore"].chosen
    assert infos["memstore"].priority == 10 and not infos["memstore"].chosen
    assert (await app.aresolve(STORE)).backend == "sqlite"


async def test_constructed_plugin_gets_the_winning_provider(app: Container, tmp_path: Path) -> None:
    app.register_plugin(loaded(SqliteStorePlugin()))
    app.register_plugin(loaded(MemoryStorePlugin()))
    assert app.requirements(NotesPlugin) == [STORE]
    notes = await app.construct(
        NotesPlugin, owner="notes", extras={NotesSettings: NotesSettings(prefix="n/")}
    )
    notes.remember("a", "hello")
    assert notes.store.backend == "sqlite"
    assert SqliteKeyValue(tmp_path / "kv.db").get("n/a") == "hello"


async def test_config_pin_picks_the_lower_priority_plugin(tmp_path: Path) -> None:
    app = Container(pins={"test.kvstore": "memstore"})
    app.provide(DATA_DIR, tmp_path)
    app.register_plugin(loaded(SqliteStorePlugin()))
    app.register_plugin(loaded(MemoryStorePlugin()))
    notes = await app.construct(NotesPlugin, owner="notes", extras={NotesSettings: NotesSettings()})
    assert notes.store.backend == "memory"
    await app.aclose()


async def test_service_priority_overrides_the_manifest_priority(app: Container) -> None:
    class Eager(Plugin):
        manifest: ClassVar[Manifest] = Manifest(name="eager", priority=1, provides=(STORE,))

        def services(self) -> Sequence[Service[Any]]:
            return [Service(STORE, DictKeyValue, priority=1000)]

    app.register_plugin(loaded(SqliteStorePlugin()))
    app.register_plugin(loaded(Eager()))
    assert (await app.aresolve(STORE)).backend == "memory"


async def test_unloading_the_provider_releases_it_and_falls_back(app: Container) -> None:
    SqliteStorePlugin.closed.clear()
    app.register_plugin(loaded(SqliteStorePlugin()))
    app.register_plugin(loaded(MemoryStorePlugin()))
    assert (await app.aresolve(STORE)).backend == "sqlite"
    app.unregister_plugin("sqlstore")
    await app.aunregister_owner("sqlstore")  # waits for the background teardown
    assert SqliteStorePlugin.closed == ["sqlstore"]
    assert (await app.aresolve(STORE)).backend == "memory"
    app.unregister_plugin("memstore")
    with pytest.raises(MissingDependencyError) as caught:
        await app.construct(NotesPlugin, owner="notes", extras={NotesSettings: NotesSettings()})
    assert str(caught.value) == (
        "plugin notes needs KeyValue (parameter `store` of NotesPlugin.__init__), provided by"
        " nothing; installed providers: test.data_dir (host)"
    )


async def test_registration_is_all_or_nothing(app: Container) -> None:
    other = Token("test.other", int)

    def broken(x) -> int:  # type: ignore[no-untyped-def]
        return 1

    class Half(Plugin):
        manifest: ClassVar[Manifest] = Manifest(name="half", provides=(STORE, other))

        def services(self) -> Sequence[Service[Any]]:
            return [Service(STORE, DictKeyValue), Service(other, broken)]

    with pytest.raises(
        InjectionError, match=r"service 'test\.other' of plugin half: parameter `x`"
    ):
        app.register_plugin(loaded(Half()))
    assert not app.has(STORE)
    assert all(info.owner != "half" for info in app.bindings())


def test_undeclared_or_unbound_provides_are_warned(app: Container, logs: list[str]) -> None:
    class Sloppy(Plugin):
        manifest: ClassVar[Manifest] = Manifest(name="sloppy", provides=(DATA_DIR,))

        def services(self) -> Sequence[Service[Any]]:
            return [Service(STORE, DictKeyValue)]

    app.register_plugin(loaded(Sloppy()))
    assert (
        "WARNING plugin sloppy binds service 'test.kvstore' without listing it in"
        " manifest.provides; plugins needing it may load before it"
    ) in logs
    assert (
        "WARNING plugin sloppy lists 'test.data_dir' in manifest.provides but its services()"
        " does not bind it"
    ) in logs


def test_plugin_tokens_are_known_before_registration_for_load_ordering() -> None:
    app = Container()
    plugin_token = Token("weather.client", SqliteKeyValue)

    class NeedsClient:
        def __init__(self, client: SqliteKeyValue) -> None:
            self.client = client

    assert app.requirements(NeedsClient) == []
    app.declare_tokens(Manifest(name="weather", provides=(plugin_token,)).provides)
    assert app.requirements(NeedsClient) == [plugin_token]
