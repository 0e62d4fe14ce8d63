"""The sqlite and inmemory plugins: entry points, manifests, services, container wiring."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from builtin_plugins.inmemory import InMemoryAdapter, InMemoryPlugin, InMemorySettings
from builtin_plugins.sqlite import SqliteAdapter, SqlitePlugin, SqliteSettings
from contracts.memory import MemoryQuery
from contracts.plugin import ENTRY_POINT_GROUP, Manifest, Plugin
from contracts.storage import DATABASE, StorageError
from host.config import load_config

from .storage_helpers import make_memory


def test_entry_points_and_manifests() -> None:
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert found["sqlite"].load() is SqlitePlugin
    assert found["inmemory"].load() is InMemoryPlugin
    for plugin in (SqlitePlugin, InMemoryPlugin):
        assert plugin.manifest.provides == (DATABASE,)
        assert plugin.manifest.name == plugin.manifest.name.lower()
    assert SqlitePlugin.manifest.priority > InMemoryPlugin.manifest.priority
    assert SqlitePlugin.manifest.settings is SqliteSettings
    assert InMemoryPlugin.manifest.settings is InMemorySettings


def test_sqlite_settings_resolve_under_the_data_dir(tmp_path: Path) -> None:
    """The data dir is the config's: AGENTHOST_DATA_DIR sets it through the config."""
    data_dir = load_config(environ={"AGENTHOST_DATA_DIR": str(tmp_path)}).config.data_dir
    assert SqliteSettings().resolve_path(data_dir) == tmp_path / "agenthost.sqlite3"
    assert SqliteSettings(path=Path("x/y.db")).resolve_path(data_dir) == tmp_path / "x/y.db"
    assert (
        SqliteSettings(path=tmp_path / "abs.db").resolve_path("/elsewhere") == tmp_path / "abs.db"
    )
    assert SqliteSettings().resolve_path("/srv/data") == Path("/srv/data/agenthost.sqlite3")
    with pytest.raises(ValueError):
        SqliteSettings(synchronous="SOMETIMES")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SqliteSettings(pathh="typo")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("plugin", "adapter_type"),
    [(SqlitePlugin, SqliteAdapter), (InMemoryPlugin, InMemoryAdapter)],
)
async def test_service_factory_opens_and_closes(
    plugin: type[Plugin],
    adapter_type: type,
    tmp_path: Path,
) -> None:
    config = load_config(environ={"AGENTHOST_DATA_DIR": str(tmp_path / "data")}).config
    instance = SqlitePlugin(config=config) if plugin is SqlitePlugin else plugin()
    (service,) = instance.services()
    assert service.token is DATABASE
    lifecycle = service.factory()
    db = await anext(lifecycle)  # type: ignore[call-overload]
    assert isinstance(db, adapter_type)
    await db.create_memory(make_memory(1))
    with pytest.raises(StopAsyncIteration):
        await anext(lifecycle)  # type: ignore[call-overload]
    with pytest.raises(StorageError):
        await db.get_memories(MemoryQuery())
    if plugin is SqlitePlugin:
        assert (tmp_path / "data" / "agenthost.sqlite3").exists()


@dataclass
class _Loaded:
    manifest: Manifest
    instance: Plugin


async def test_container_picks_sqlite_by_default_and_honours_a_pin(tmp_path: Path) -> None:
    container_module = pytest.importorskip("host.di")
    config = load_config(environ={"AGENTHOST_DATA_DIR": str(tmp_path)}).config
    for pins, expected in (({}, SqliteAdapter), ({"database": "inmemory"}, InMemoryAdapter)):
        container = container_module.Container(pins)
        for plugin in (InMemoryPlugin(), SqlitePlugin(config=config)):
            container.register_plugin(_Loaded(plugin.manifest, plugin))
        db = await container.aresolve(DATABASE)
        assert isinstance(db, expected)
        await db.create_memory(make_memory(1))
        assert await db.count_memories() == 1
        await container.aclose()
        with pytest.raises(StorageError):
            await db.count_memories()
