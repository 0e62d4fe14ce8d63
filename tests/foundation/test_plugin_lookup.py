"""`host.plugin_lookup`: one installed plugin by name, through its entry point, without a host."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.config import HostConfig
from contracts.eventstore import EventStoreSettings
from contracts.storage import (
    DATABASE,
    DatabaseAdapter,
    LocalFileSettings,
    MigratableStore,
    PooledStoreOpener,
)
from host.plugin_lookup import PluginNotFoundError, construct, open_service, plugin_settings


def config(**plugins: dict[str, object]) -> HostConfig:
    return HostConfig.model_validate({"plugins": plugins})


def test_settings_come_from_the_plugins_section() -> None:
    settings = plugin_settings("sqlite", config(sqlite={"path": "x.db", "hnsw_m": 8}))
    assert isinstance(settings, LocalFileSettings)
    assert settings.resolve_path(Path("/data")) == Path("/data/x.db")
    assert settings.hnsw_m == 8
    audit = plugin_settings("audit", config(audit={"backend": "sqlite"}))
    assert isinstance(audit, EventStoreSettings) and audit.backend == "sqlite"


def test_construct_injects_settings_and_config(tmp_path: Path) -> None:
    cfg = HostConfig.model_validate({"data_dir": str(tmp_path), "plugins": {"sqlite": {}}})
    sqlite = construct("sqlite", cfg)
    assert isinstance(sqlite, MigratableStore) and not isinstance(sqlite, PooledStoreOpener)
    assert isinstance(construct("postgres", cfg), PooledStoreOpener)
    assert not isinstance(construct("inmemory", cfg), MigratableStore)


async def test_a_migratable_store_migrates_its_configured_file(tmp_path: Path) -> None:
    cfg = HostConfig.model_validate({"data_dir": str(tmp_path)})
    plugin = construct("sqlite", cfg)
    assert isinstance(plugin, MigratableStore)
    steps: list[str] = []
    done = await plugin.migrate_store(lambda n, of, text: steps.append(text))
    assert done.where == str(tmp_path / "agenthost.sqlite3") and done.version
    assert steps and (tmp_path / "agenthost.sqlite3").exists()
    again: list[str] = []
    await plugin.migrate_store(lambda n, of, text: again.append(text))
    assert again == []  # nothing left to apply


async def test_open_service_opens_and_closes_a_store() -> None:
    async with open_service(construct("inmemory", HostConfig()), DATABASE) as db:
        assert isinstance(db, DatabaseAdapter) and db.backend == "inmemory"
        assert await db.count_memories() == 0
    with pytest.raises(Exception, match="closed"):
        await db.count_memories()


def test_unknown_plugin_and_bad_settings_are_named() -> None:
    with pytest.raises(PluginNotFoundError, match="plugin nosuch is not installed"):
        construct("nosuch", HostConfig())
    with pytest.raises(ValueError, match="hnsw_m"):
        plugin_settings("sqlite", config(sqlite={"hnsw_m": 1}))
