"""The ``postgres`` plugin: binds `DATABASE` to a `PostgresAdapter` when pinned or preferred.

Its priority (50) is below ``sqlite`` (100), so installing it changes nothing until the config
asks for it: ``services: {database: postgres}`` with ``plugins.postgres.url`` (or
``AGENTHOST_PLUGINS__POSTGRES__URL``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ConfigDict, Field, SecretStr, model_validator

from contracts.plugin import Manifest, Plugin
from contracts.services import Service
from contracts.storage import (
    DATABASE,
    DatabaseAdapter,
    MigratedStore,
    MigrationStep,
    PooledStore,
    StorageError,
)
from host.storekit import VectorIndexSettings, pool_gauges

if TYPE_CHECKING:
    from .adapter import PostgresAdapter

INDEX_BUILD_MEMORY = "512MB"
"""``maintenance_work_mem`` for vector index builds: an HNSW graph of ~200k x 384-d fits."""

__all__ = ["PostgresPlugin", "PostgresSettings"]


class PostgresSettings(VectorIndexSettings):
    """Config section ``plugins.postgres`` (the store kit's vector index fields with pgvector's
    defaults)."""

    model_config = ConfigDict(extra="forbid")

    url: SecretStr | None = None
    """``postgresql://user:password@host:5432/db`` (a secret: it may hold the password)."""
    pool_min: int = Field(default=2, ge=0)
    """Connections kept open even when idle."""
    pool_max: int = Field(default=10, ge=1)
    """Most connections open at once; callers beyond it wait for one to be returned."""
    acquire_timeout: float = Field(default=30.0, gt=0)
    """Seconds a call waits for a free connection before `PoolExhaustedError`."""
    max_idle: float = Field(default=300.0, gt=0)
    """Seconds an idle connection beyond ``pool_min`` stays open."""
    max_lifetime: float = Field(default=3600.0, gt=0)
    """Seconds after which a connection is replaced by a fresh one."""
    reconnect_timeout: float = Field(default=300.0, gt=0)
    """Seconds the pool keeps retrying (with backoff) to open a connection the server refused."""
    check_connections: bool = True
    """Check each connection as it leaves the pool (one round trip) so that one the server
    dropped is replaced instead of failing the call that got it."""
    connect_timeout: float = Field(default=10.0, gt=0)
    """Seconds to connect (and to open the pool's first ``pool_min`` connections)."""
    hnsw_m: int = Field(default=16, ge=4)
    hnsw_ef_construction: int = Field(default=64, ge=8)
    hnsw_ef_search: int = Field(default=64, ge=1)
    index_build_memory: str | None = Field(
        default=INDEX_BUILD_MEMORY, pattern=r"^[1-9][0-9]*\s*(kB|MB|GB|TB)$"
    )
    """``maintenance_work_mem`` while a vector index is built, e.g. ``2GB`` (PostgreSQL units;
    None: the server's setting). pgvector builds an HNSW graph many times faster while it fits."""

    @model_validator(mode="after")
    def _pool_bounds(self) -> PostgresSettings:
        if self.pool_min > self.pool_max:
            raise ValueError(f"pool_min ({self.pool_min}) exceeds pool_max ({self.pool_max})")
        return self


class PostgresPlugin(Plugin):
    """Memories in PostgreSQL with pgvector indexes, through a connection pool."""

    manifest: ClassVar[Manifest] = Manifest(
        name="postgres",
        description="Memory store in PostgreSQL + pgvector (HNSW / IVF), pooled with psycopg",
        priority=50,
        provides=(DATABASE,),
        settings=PostgresSettings,
        reloadable=False,
    )

    def __init__(self, settings: PostgresSettings | None = None) -> None:
        self.settings = settings or PostgresSettings()
        self.adapter: PostgresAdapter | None = None

    def _url(self) -> str:
        if self.settings.url is None:
            raise StorageError("plugins.postgres.url is not set (AGENTHOST_PLUGINS__POSTGRES__URL)")
        return self.settings.url.get_secret_value()

    async def open_adapter(self) -> AsyncIterator[DatabaseAdapter]:
        """Service factory: connect and migrate on first use; close the pool at shutdown."""
        url = self._url()
        from .adapter import PostgresAdapter  # psycopg and pgvector only when postgres is used

        s = self.settings
        adapter = await PostgresAdapter.open(
            url,
            min_size=s.pool_min,
            max_size=s.pool_max,
            acquire_timeout=s.acquire_timeout,
            max_idle=s.max_idle,
            max_lifetime=s.max_lifetime,
            reconnect_timeout=s.reconnect_timeout,
            check_connections=s.check_connections,
            connect_timeout=s.connect_timeout,
            index_params=s.index_params(),
            index_build_memory=s.index_build_memory,
        )
        self.adapter = adapter
        try:
            yield adapter
        finally:
            self.adapter = None
            await adapter.close()

    def metric_gauges(self) -> dict[str, float]:
        """Sampled by the host: the connection pool (OpenTelemetry database conventions)."""
        if self.adapter is None:
            return {}
        return pool_gauges(self.adapter.pool)

    async def open_pooled(self, url: str, *, min_size: int, max_size: int) -> PooledStore:
        """A store of its own on `url` (cluster mode's queue and memories), migrated. Its pool
        does not check each connection as it leaves the pool (a round trip per transaction,
        ~5% of a cluster worker's CPU): a connection PostgreSQL dropped fails its one call,
        which the worker tries again (a claim, a commit) or the API answers with 503."""
        from .adapter import PostgresAdapter

        return await PostgresAdapter.open(
            url, min_size=min_size, max_size=max_size, check_connections=False
        )

    async def migrate_store(self, on_step: MigrationStep) -> MigratedStore:
        """``agenthost db migrate``: connect, apply the pending migrations, disconnect."""
        url = self._url()
        from .adapter import PostgresAdapter
        from .schema import SCHEMA_VERSION

        adapter = await PostgresAdapter.open(url, min_size=1, max_size=1, on_migration=on_step)
        await adapter.close()
        return MigratedStore(adapter.where, SCHEMA_VERSION)

    def services(self) -> Sequence[Service[Any]]:
        return (Service(DATABASE, self.open_adapter),)
