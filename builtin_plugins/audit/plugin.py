"""The ``audit`` plugin: binds `EVENT_STORE` and records every wanted bus event into it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar

from contracts.config import HostConfig
from contracts.events import Event, EventBusProtocol, EventPayload, Subscription
from contracts.eventstore import EVENT_STORE, EventStore
from contracts.plugin import Manifest, Plugin
from contracts.services import Service
from contracts.storage import DatabaseAdapter

from .recorder import AuditRecorder
from .settings import AuditSettings
from .store import open_event_store

__all__ = ["AuditPlugin"]


class AuditPlugin(Plugin):
    """The audit trail: every runtime event, per agent, in an append-only event store.

    The store opens once (in `setup`, or on first resolve of `EVENT_STORE` if that comes first)
    and closes at teardown; recording runs in the background (see `AuditRecorder`).
    """

    manifest: ClassVar[Manifest] = Manifest(
        name="audit",
        description="Audit trail: records runtime events into the event store (SQLite/PostgreSQL)",
        priority=50,
        provides=(EVENT_STORE,),
        settings=AuditSettings,
        reloadable=False,
    )

    def __init__(
        self,
        bus: EventBusProtocol,
        settings: AuditSettings | None = None,
        database: DatabaseAdapter | None = None,
        config: HostConfig | None = None,
    ) -> None:
        self.bus = bus
        self.data_dir = (config or HostConfig()).data_dir
        """The config's ``data_dir`` (``AGENTHOST_DATA_DIR`` sets it, through the config)."""
        self.settings = settings or AuditSettings()
        self.database = database
        self.store: EventStore | None = None
        self.recorder: AuditRecorder | None = None
        self._subscription: Subscription | None = None
        self._opening = asyncio.Lock()

    async def event_store(self) -> EventStore:
        """The store, opened on first use (the `EVENT_STORE` service factory)."""
        async with self._opening:
            if self.store is None:
                self.store = await open_event_store(self.settings, self.database, self.data_dir)
            return self.store

    async def setup(self) -> None:
        store = await self.event_store()
        self.recorder = AuditRecorder(store, self.settings)
        self._subscription = self.bus.on_any(self._on_event, owner=self.manifest.name)

    def _on_event(self, event: Event[Any], payload: EventPayload) -> None:
        if self.recorder is not None:
            self.recorder.record(event.name, payload)

    async def flush(self) -> None:
        """Wait until every event recorded so far is in the store."""
        if self.recorder is not None:
            await self.recorder.flush()

    async def teardown(self) -> None:
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None
        try:
            if self.recorder is not None:
                await self.recorder.aclose()
        finally:
            self.recorder = None
            if self.store is not None:
                await self.store.close()
                self.store = None

    def metric_counters(self) -> dict[str, float]:
        """Sampled by the host: events appended to the store and events dropped."""
        if self.recorder is None:
            return {}
        return {
            "agenthost.eventstore.appends": self.recorder.recorded,
            "agenthost.eventstore.dropped": self.recorder.dropped,
        }

    def services(self) -> Sequence[Service[Any]]:
        return (Service(EVENT_STORE, self.event_store),)
