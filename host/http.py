"""The HTTP API (FastAPI, served by uvicorn): agents, messages, streamed replies, memories.

Routes (OpenAPI at ``/openapi.json``, docs at ``/docs``):

- ``GET  /health``                                    liveness, never needs the API key
- ``GET  /ready``                                     503 until an agent runs and the store answers
- ``GET  /agents``                                    configured agents and whether they run
- ``GET  /agents/{agent}``                            one agent
- ``POST /agents/{agent}/messages``                   send a message, get the `Reply`
- ``POST /agents/{agent}/messages/stream``            the same, reply streamed as server-sent events
- ``GET  /agents/{agent}/rooms/{room_id}/memories``   a room's memories, paginated by cursor
- start / stop agents, list an agent's rooms, delete memories: `host.http_manage`

Each area's routes are a module-level `APIRouter` in a module of its own (`host.http_ops`,
`host.http_agents`, `host.http_memories`, `host.http_manage`, `host.http_docs`; the host adds
`host.http_plugins`, `host.metrics.routes`, `host.knowledge_routes` and the console); they reach
the agents, the dispatch and the host through dependencies over ``app.state``
(`host.http_deps`). Bad input and failures: `host.http_errors`.

``{agent}`` is an agent's name, username or id. When ``http.api_key`` is set, every route but
``/health`` (and the Swagger UI assets) requires it as ``X-API-Key: <key>`` or
``Authorization: Bearer <key>`` (401 otherwise). Request bodies over ``http.max_body_bytes`` get
413, bodies that are not JSON 400; the schema documents these (host/http_docs.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Generator
from typing import TYPE_CHECKING

import uvicorn
from fastapi import APIRouter, Depends, FastAPI

from contracts.config import HttpSettings
from host import http_agents, http_manage, http_memories, http_ops, http_plugins, knowledge_routes
from host.agents import AgentManager
from host.http_agents import AgentInfo, MessageIn
from host.http_deps import API_KEY_HEADER, Dispatch, ErrorOut, require_key
from host.http_docs import assets_router, docs_router, document
from host.http_errors import BodyLimit, install_error_handlers
from host.http_idempotency import INGRESS_FILE, IngressLog, LocalIngress
from host.http_memories import MemoryPage
from host.metrics import routes as metrics_routes

if TYPE_CHECKING:
    from host.app import Host

__all__ = [
    "API_KEY_HEADER",
    "AgentInfo",
    "Dispatch",
    "HttpServer",
    "MemoryPage",
    "MessageIn",
    "app_from_settings",
    "create_app",
    "include_guarded",
    "mount_host_routes",
]

DEFAULT_MAX_BODY = 1_048_576


def create_app(
    agents: AgentManager,
    *,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    title: str = "agenthost",
    dispatch: Dispatch | None = None,
    ingress: LocalIngress | None = None,
) -> FastAPI:
    """The API over `agents`; `api_key` (when not None) guards every route but ``/health``.
    `dispatch` takes the messages in cluster mode; `ingress` records keyed messages
    (``Idempotency-Key``) in single-process mode (the host gives one over its data dir)."""
    app = FastAPI(
        title=title,
        description="Talk to the agents this host runs.",
        version="1",
        responses={404: {"model": ErrorOut}},
        openapi_url=None,  # served by docs_router, behind the API key like every route
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.state.agents = agents
    app.state.api_key = api_key
    app.state.dispatch = dispatch
    app.state.ingress = ingress
    app.state.title = title
    app.include_router(http_ops.open_router)
    for router in (
        http_ops.router,
        http_agents.router,
        http_memories.router,
        docs_router,
        http_manage.router,
    ):
        include_guarded(app, router)
    app.include_router(assets_router)
    document(app)
    install_error_handlers(app)
    return app


def include_guarded(app: FastAPI, router: APIRouter) -> None:
    """Mount `router` on `app` behind the API key check (every route but ``/health`` is; the
    host mounts ``/metrics``, ``/stats`` and the dev reload route this way)."""
    app.include_router(router, dependencies=[Depends(require_key)])


def mount_host_routes(app: FastAPI, host: Host) -> None:
    """The routes over the host itself, guarded: ``/metrics`` and ``/stats``, ``/plugins``,
    ``/knowledge``, and in dev mode the reload route; in single-process mode, keyed messages
    recorded in the host's data dir."""
    app.state.host = host
    if app.state.dispatch is None and app.state.ingress is None:
        app.state.ingress = LocalIngress(IngressLog(host.config.data_dir / INGRESS_FILE))
    app.state.telemetry = host.telemetry
    app.state.container = host.container
    include_guarded(app, metrics_routes.router)
    include_guarded(app, http_plugins.router)
    include_guarded(app, knowledge_routes.router)
    if host.reloader is not None:
        include_guarded(app, http_plugins.reload_router)


def app_from_settings(
    agents: AgentManager, settings: HttpSettings, dispatch: Dispatch | None = None
) -> FastAPI:
    """`create_app` configured from the ``http`` config section."""
    key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    return create_app(
        agents, api_key=key or None, max_body_bytes=settings.max_body_bytes, dispatch=dispatch
    )


class _Server(uvicorn.Server):
    """uvicorn leaving Ctrl-C / SIGTERM to the host, which stops it with everything else
    (uvicorn's own capture would re-raise them once it has shut down)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpServer:
    """uvicorn serving an app in the current event loop; ``port=0`` picks a free port."""

    def __init__(self, app: FastAPI, *, host: str = "127.0.0.1", port: int = 8000) -> None:
        self.config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="off"
        )
        self.server = _Server(self.config)
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when started with port 0)."""
        for server in self.server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.config.port

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    async def start(self) -> None:
        """Start serving in a background task; returns once the socket listens. An address that
        cannot be bound raises `OSError` naming it (uvicorn binding it would exit the process)."""
        host, port = self.config.host, self.config.port
        try:
            sock = _listen(host, port)
        except OSError as exc:
            raise OSError(f"cannot serve HTTP on {host}:{port}: {exc.strerror or exc}") from exc
        self._task = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            if self._task.done():
                await self._task  # raises the startup error
                raise RuntimeError(f"HTTP server on {self.config.host}:{self.config.port} exited")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish, close."""
        self.server.should_exit = True
        if self._task is not None:
            await self._task


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket created with ``IPPROTO_TCP`` as its protocol: asyncio sets
    TCP_NODELAY on the connections it accepts only then (`socket.create_server` leaves the
    protocol 0), and without it every response whose headers and body go out in two writes
    waited ~40 ms for the client's delayed ACK (Nagle): 48 ms for ``GET /health``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if os.name == "posix":  # as socket.create_server: rebind while old connections linger
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock
