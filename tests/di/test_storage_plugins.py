"""The container with the real storage plugins: a plugin needing ``db: DatabaseAdapter``, its
bound logger and its settings gets all three; the database is released with the app scope."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from uuid import uuid4

import pytest
from loguru import logger
from pydantic import BaseModel

from builtin_plugins.inmemory import InMemoryPlugin
from builtin_plugins.sqlite import SqlitePlugin, SqliteSettings
from contracts.logging import LOGGER, Logger
from contracts.memory import Content, Memory
from contracts.plugin import Manifest, Plugin
from contracts.services import MissingDependencyError
from contracts.storage import DATABASE, DatabaseAdapter, StorageError
from host.di import Container


class JournalSettings(BaseModel):
    room: str = "lobby"


class JournalPlugin(Plugin):
    manifest: ClassVar[Manifest] = Manifest(name="journal", settings=JournalSettings)

    def __init__(self, db: DatabaseAdapter, log: Logger, settings: JournalSettings) -> None:
        self.db = db
        self.log = log
        self.settings = settings

    async def write(self, text: str) -> None:
        memory = Memory(
            agent_id=uuid4(), entity_id=uuid4(), room_id=uuid4(), content=Content(text=text)
        )
        await self.db.create_memory(memory)
        self.log.info("wrote to {}", self.settings.room)


@dataclass
class Loaded:
    manifest: Manifest
    instance: Plugin


async def load(container: Container, cls: type[Any], extras: dict[Any, object]) -> Any:
    """What the loader does per plugin: construct with injection, then register its services."""
    plugin = await container.construct(cls, owner=cls.manifest.name, extras=extras)
    container.register_plugin(Loaded(cls.manifest, plugin))
    return plugin


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> SqliteSettings:
    return SqliteSettings(path=tmp_path / "journal.sqlite3")


async def test_plugin_gets_database_logger_and_settings(sqlite_settings: SqliteSettings) -> None:
    lines: list[str] = []
    sink = logger.add(
        lambda m: lines.append(f"{m.record['extra'].get('plugin')}: {m.record['message']}")
    )
    container = Container()
    try:
        await load(container, SqlitePlugin, {SqliteSettings: sqlite_settings})
        await load(container, InMemoryPlugin, {})
        assert container.requirements(JournalPlugin) == [DATABASE, LOGGER]
        settings = JournalSettings(room="kitchen")
        journal = await load(
            container,
            JournalPlugin,
            {Logger: logger.bind(plugin="journal"), JournalSettings: settings},
        )
        assert journal.db.backend == "sqlite"  # priority 100 beats inmemory
        assert journal.db is await container.aresolve(DATABASE)
        assert journal.settings is settings
        await journal.write("hello")
        assert await journal.db.count_memories() == 1
        assert "journal: wrote to kitchen" in lines
    finally:
        logger.remove(sink)
        await container.aclose()
    assert sqlite_settings.path is not None and sqlite_settings.path.exists()
    with pytest.raises(StorageError, match="is closed"):
        await journal.db.count_memories()


async def test_pinned_inmemory_database(sqlite_settings: SqliteSettings) -> None:
    container = Container(pins={"database": "inmemory"})
    await load(container, SqlitePlugin, {SqliteSettings: sqlite_settings})
    await load(container, InMemoryPlugin, {})
    journal = await load(
        container, JournalPlugin, {Logger: logger, JournalSettings: JournalSettings()}
    )
    assert journal.db.backend == "inmemory"
    await container.aclose()
    assert not (sqlite_settings.path and sqlite_settings.path.exists())  # sqlite never opened


async def test_without_a_storage_plugin_the_journal_fails_with_the_reason() -> None:
    container = Container()
    with pytest.raises(MissingDependencyError) as caught:
        await load(container, JournalPlugin, {Logger: logger, JournalSettings: JournalSettings()})
    assert str(caught.value) == (
        "plugin journal needs DatabaseAdapter (parameter `db` of JournalPlugin.__init__),"
        " provided by nothing; installed providers: none"
    )
    await container.aclose()
