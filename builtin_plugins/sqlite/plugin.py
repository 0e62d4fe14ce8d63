"""The ``sqlite`` plugin: binds `DATABASE` to a `SqliteAdapter` (the host's default store)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field

from contracts.config import HostConfig
from contracts.plugin import Manifest, Plugin
from contracts.services import Service
from contracts.storage import DATABASE, DatabaseAdapter, MigratedStore, MigrationStep
from host.storekit import VectorIndexSettings

from .adapter import SqliteAdapter
from .schema import SCHEMA_VERSION

__all__ = ["SqlitePlugin", "SqliteSettings"]

DEFAULT_FILE = "agenthost.sqlite3"


class SqliteSettings(VectorIndexSettings):
    """Config section ``plugins.sqlite`` (with the vector index fields of the store kit)."""

    model_config = ConfigDict(extra="forbid")

    path: Path | None = None
    """Database file; relative paths and the default (``agenthost.sqlite3``) live in the data
    dir (``data_dir`` / ``AGENTHOST_DATA_DIR``, default ``data``)."""
    busy_timeout: float = Field(default=30.0, gt=0)
    """Seconds to wait for another process's write lock before failing."""
    synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "NORMAL"
    """SQLite ``PRAGMA synchronous``; NORMAL is durable across crashes in WAL mode."""

    def resolve_path(self, data_dir: str | Path) -> Path:
        """The database file: `path` if absolute, else under `data_dir` (the config's)."""
        path = self.path if self.path is not None else Path(DEFAULT_FILE)
        return path if path.is_absolute() else Path(data_dir) / path


class SqlitePlugin(Plugin):
    """Memories in one SQLite file under the data dir: works with no setup at all."""

    manifest: ClassVar[Manifest] = Manifest(
        name="sqlite",
        description="Memory store in a local SQLite file (WAL) with faiss vector indexes",
        priority=100,
        provides=(DATABASE,),
        settings=SqliteSettings,
        reloadable=False,
    )

    def __init__(
        self, settings: SqliteSettings | None = None, config: HostConfig | None = None
    ) -> None:
        self.settings = settings or SqliteSettings()
        self.data_dir = (config or HostConfig()).data_dir
        """The config's ``data_dir`` (``AGENTHOST_DATA_DIR`` sets it, through the config)."""

    async def open_adapter(self) -> AsyncIterator[DatabaseAdapter]:
        """Service factory: open the database, yield it, close it when the app scope ends."""
        adapter = await SqliteAdapter.open(
            self.settings.resolve_path(self.data_dir),
            index_params=self.settings.index_params(),
            busy_timeout=self.settings.busy_timeout,
            synchronous=self.settings.synchronous,
        )
        try:
            yield adapter
        finally:
            await adapter.close()

    async def migrate_store(self, on_step: MigrationStep) -> MigratedStore:
        """``agenthost db migrate``: open the file, apply its pending migrations, close it."""
        path = self.settings.resolve_path(self.data_dir)
        adapter = await SqliteAdapter.open(path, on_migration=on_step)
        await adapter.close()
        return MigratedStore(str(path), SCHEMA_VERSION)

    def services(self) -> Sequence[Service[Any]]:
        return (Service(DATABASE, self.open_adapter),)
