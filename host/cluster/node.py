"""`ClusterNode`: what cluster mode adds to one `Host` (docs/cluster.md).

The host calls it at four points: `open` before the agents start (the queue's PostgreSQL and the
NATS link), `wrap_database` / `unit_ids` when it builds each agent (writes held in a message's
unit, deterministic ids), `start` once the agents run (the worker and/or the API dispatch),
`mount` on the HTTP app (``GET /cluster``, 429/502/504), then `drain` and `close` when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from types import SimpleNamespace
from typing import Any

import psycopg
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from loguru import logger

from contracts.cluster import from_cluster, marked_events
from contracts.config import HostConfig
from contracts.errors import AgentHostError
from contracts.events import Event, EventPayload, event_named
from contracts.storage import DatabaseAdapter, PooledStore, PooledStoreOpener, StorageError
from host.agents import AgentManager
from host.cache import ProviderCache
from host.events import EventBus
from host.http import include_guarded
from host.metrics.sampler import Reading, Sampler
from host.postgres_config import postgres_plugin_url

from .dispatch import ClusterDispatch, MessageParked, ReplyTimeout
from .link import NatsLink, Subjects
from .outbox import Outbox, Seen, unframe
from .queue import RoomQueue, default_node_id
from .records import Backlogged
from .unit import UnitAdapter, current_unit, unit_ids
from .worker import Worker

__all__ = ["ClusterConfigError", "ClusterNode", "cluster_router"]

_log = logger.bind(component="cluster")

HEARTBEAT = 2.0
"""Seconds between a member's heartbeats (``GET /cluster`` calls it dead after three missed)."""


class ClusterConfigError(AgentHostError):
    """Cluster mode cannot run with this configuration (named in the message)."""


def postgres_url(config: HostConfig) -> str:
    """The cluster's PostgreSQL: ``cluster.postgres_url``, else the memory store's URL."""
    settings = config.cluster
    if settings.postgres_url is not None:
        return settings.postgres_url.get_secret_value()
    url = postgres_plugin_url(config)
    if url is None:
        raise ClusterConfigError(
            "cluster mode needs a PostgreSQL: set cluster.postgres_url or plugins.postgres.url"
            " (AGENTHOST_CLUSTER__POSTGRES_URL)"
        )
    return url


async def open_store(config: HostConfig, *, max_size: int) -> PooledStore:
    """The cluster's own pool on `postgres_url`, opened by the memory store plugin
    (``services.database``, found through its entry point) as a `PooledStore`."""
    from host.plugin_lookup import PluginNotFoundError, construct

    name = config.services.get("database") or "postgres"
    try:
        plugin: object = construct(name, config)
        if not isinstance(plugin, PooledStoreOpener) and name != "postgres":
            name, plugin = "postgres", construct("postgres", config)  # cluster status on sqlite
    except PluginNotFoundError as exc:
        raise ClusterConfigError(f"cluster mode: {exc}") from None
    if not isinstance(plugin, PooledStoreOpener):
        raise ClusterConfigError(
            f"cluster mode needs a memory store that lends its PostgreSQL pool; plugin {name}"
            " cannot open one (it is no PooledStoreOpener)"
        )
    return await plugin.open_pooled(postgres_url(config), min_size=1, max_size=max_size)


class ClusterNode:
    def __init__(self, config: HostConfig) -> None:
        self.settings = config.cluster
        if config.services.get("database") != "postgres":
            raise ClusterConfigError(
                "cluster mode keeps memories in PostgreSQL: set services.database to postgres"
                " (a reply commits with the room's progress in one transaction there)"
            )
        self.url = postgres_url(config)
        self.config = config
        self.node_id = self.settings.node_id or default_node_id()
        self.role = self.settings.role
        self.link = NatsLink(self.settings.nats_url, self.node_id)
        self.store: PooledStore | None = None
        self.queue: RoomQueue | None = None
        self.worker: Worker | None = None
        self.dispatch: ClusterDispatch | None = None
        self.outbox: Outbox | None = None
        self._beat: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self.store = await open_store(self.config, max_size=self.settings.concurrency + 4)
        self.queue = RoomQueue(self.store, self.node_id, lease=self.settings.lease)
        await self.queue.migrate()
        await self.queue.heartbeat(self.role)
        self.link.start()
        self._beat = asyncio.create_task(self._heartbeat(), name="cluster-heartbeat")
        _log.info("cluster member {} ({}) on {}", self.node_id, self.role, self.store.where)

    async def _heartbeat(self) -> None:
        assert self.queue is not None
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                await self.queue.heartbeat(self.role)
            except Exception as exc:
                _log.warning("cluster heartbeat failed: {}", exc)

    def wrap_database(self, database: DatabaseAdapter) -> DatabaseAdapter:
        return UnitAdapter(database)

    unit_ids = staticmethod(unit_ids)

    async def start(
        self,
        agents: AgentManager,
        events: EventBus,
        cache: ProviderCache,
        sampler: Sampler | None = None,
    ) -> None:
        """Start the dispatch and/or worker; `sampler` (metrics on) gets this member's figures."""
        assert self.queue is not None
        if sampler is not None:
            sampler.add("cluster", self.metric_counters, kind="counter")
            sampler.add("cluster", self.metric_gauges)
        self.outbox = Outbox(
            self.queue,
            self.link,
            interval=self.settings.poll_interval,
            stale=max(5.0, 5 * self.settings.poll_interval),
        )
        self.outbox.start()
        await self._bridge_cache(events, cache)
        if self.role in ("api", "both"):
            self.dispatch = ClusterDispatch(self.queue, self.link, self.settings)
            await self.dispatch.start()
        if self.role in ("worker", "both"):
            self.worker = Worker(self.queue, self.link, agents, self.settings, self.outbox)
            await self.worker.start()

    async def _bridge_cache(self, events: EventBus, cache: ProviderCache) -> None:
        """What travels with the local events: provider-cache invalidations (an event the cache
        listens to here invalidates the same entries in every other member; best effort, entries
        also expire) and the events marked for the cluster (emitted elsewhere as
        `from_cluster(event)`)."""
        marked = set(self.settings.events)
        outbox = self.outbox
        assert outbox is not None

        async def forward(event: Event[Any], payload: EventPayload) -> None:
            if event.name in cache.watched_events:
                fields = {
                    name: str(getattr(payload, name))
                    for name in ("agent_id", "room_id", "entity_id")
                    if getattr(payload, name, None) is not None
                }
                data = {"from": self.node_id, "event": event.name, "context": fields}
                await self.link.publish(Subjects.CACHE, json.dumps(data).encode())
            if event.name in marked or event.name in marked_events():
                body = {"from": self.node_id, "payload": payload.model_dump_json()}
                entry = (Subjects.event(event.name), json.dumps(body).encode())
                unit = current_unit()
                if unit is not None:  # sent once the message commits (never if it is fenced)
                    unit.outbox.append(entry)
                else:
                    await outbox.send([entry])

        async def invalidate(_subject: str, data: bytes) -> None:
            item = json.loads(data)
            if item.get("from") != self.node_id:
                cache.handle_event(str(item["event"]), SimpleNamespace(**item["context"]))

        seen = Seen()

        async def emit(subject: str, data: bytes) -> None:
            seq, item = unframe(data)
            event = event_named(Subjects.event_name(subject))
            if item.get("from") == self.node_id or event is None or not seen.first(seq):
                return  # ours, one this process does not know (its plugin not here), or again
            payload = event.payload.model_validate_json(item["payload"])
            await events.emit(from_cluster(event), payload)

        events.on_any(forward, owner="cluster")
        await self.link.subscribe(Subjects.CACHE, invalidate)
        await self.link.subscribe(Subjects.EVENTS, emit)

    def metric_counters(self) -> Reading:
        """``agenthost.cluster.<what>`` of this worker since it started."""
        if self.worker is None:
            return {}
        counts: dict[str | tuple[str, tuple[tuple[str, str], ...]], float] = {
            f"agenthost.cluster.{k}": float(v) for k, v in self.worker.counts.items()
        }
        for phase, seconds in self.worker.seconds.items():  # where its time went
            counts[f"agenthost.cluster.seconds_{phase}"] = seconds
        return counts

    def metric_gauges(self) -> Reading:
        gauges: dict[str | tuple[str, tuple[tuple[str, str], ...]], float] = {
            "agenthost.cluster.nats_connected": float(self.link.connected)
        }
        if self.worker is not None:
            gauges["agenthost.cluster.rooms_held"] = len(self.worker.held)
        if self.dispatch is not None:
            gauges["agenthost.cluster.replies_awaited"] = self.dispatch.awaited
        return gauges

    def mount(self, app: FastAPI) -> None:
        include_guarded(app, cluster_router(self))

        async def backlogged(_request: Request, exc: Exception) -> JSONResponse:
            assert isinstance(exc, Backlogged)
            return JSONResponse(
                {"detail": str(exc)},
                status_code=429,
                headers={"Retry-After": str(exc.retry_after)},
            )

        async def parked(_request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(exc)}, status_code=502)

        async def timeout(_request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(exc)}, status_code=504)

        async def unavailable(_request: Request, exc: Exception) -> JSONResponse:
            """PostgreSQL away (restarting): nothing was taken, the client may send it again
            (with its Idempotency-Key, a message taken before the failure is not taken twice)."""
            _log.warning("cluster queue unavailable: {}", type(exc).__name__)
            return JSONResponse(
                {"detail": f"the cluster's PostgreSQL is unavailable ({type(exc).__name__})"},
                status_code=503,
                headers={"Retry-After": str(self.settings.retry_after)},
            )

        app.add_exception_handler(psycopg.Error, unavailable)
        app.add_exception_handler(StorageError, unavailable)
        app.add_exception_handler(Backlogged, backlogged)
        app.add_exception_handler(MessageParked, parked)
        app.add_exception_handler(ReplyTimeout, timeout)

    async def status(self) -> dict[str, Any]:
        assert self.queue is not None
        status = await self.queue.status(alive_within=3 * HEARTBEAT)
        status["nats"] = "connected" if self.link.connected else "down"
        return status

    async def drain(self) -> None:
        """Graceful stop, first step: the worker finishes its messages and releases its rooms."""
        if self.worker is not None:
            await self.worker.stop()

    async def close(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
        if self.dispatch is not None:
            await self.dispatch.stop()
        if self.outbox is not None:
            await self.outbox.stop()
        if self.queue is not None and self.worker is None:
            try:
                await self.queue.heartbeat(self.role, stopped=True)
            except Exception as exc:
                _log.debug("last heartbeat failed: {}", exc)
        await self.link.close()
        if self.store is not None:
            await self.store.close()


def cluster_router(node: ClusterNode) -> APIRouter:
    """``GET /cluster``: members (workers and API processes, with their counters), rooms held,
    queue depth, redeliveries and parked messages."""
    router = APIRouter(tags=["ops"])

    @router.get("/cluster")
    async def cluster_status() -> dict[str, Any]:
        return await node.status()

    return router
