"""The ``inmemory`` plugin: binds `DATABASE` to an `InMemoryAdapter` (tests, ephemeral agents)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

from contracts.plugin import Manifest, Plugin
from contracts.services import Service
from contracts.storage import DATABASE, DatabaseAdapter
from host.storekit import VectorIndexSettings

from .adapter import InMemoryAdapter

__all__ = ["InMemoryPlugin", "InMemorySettings"]


class InMemorySettings(VectorIndexSettings):
    """Config section ``plugins.inmemory``: vector index parameters."""


class InMemoryPlugin(Plugin):
    """Memories in process memory, lost at exit. Pin it with ``services: {database: inmemory}``."""

    manifest: ClassVar[Manifest] = Manifest(
        name="inmemory",
        description="Memory store in process memory (dicts + numpy, faiss indexes)",
        priority=10,
        provides=(DATABASE,),
        settings=InMemorySettings,
        reloadable=False,
    )

    def __init__(self, settings: InMemorySettings | None = None) -> None:
        self.settings = settings or InMemorySettings()

    async def open_adapter(self) -> AsyncIterator[DatabaseAdapter]:
        """Service factory: a fresh store for the app scope, cleared when it closes."""
        adapter = InMemoryAdapter(index_params=self.settings.index_params())
        try:
            yield adapter
        finally:
            await adapter.close()

    def services(self) -> Sequence[Service[Any]]:
        return (Service(DATABASE, self.open_adapter),)
