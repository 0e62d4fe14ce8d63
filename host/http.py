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

``{agent}`` is an agent's name, username or id. When ``http.api_key`` is set, every route but
``/health`` (and the Swagger UI assets) requires it as ``X-API-Key: <key>`` or
``Authorization: Bearer <key>`` (401 otherwise). Request bodies over ``http.max_body_bytes`` get
413, bodies that are not JSON 400; the schema documents these (host/http_docs.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, MutableMapping
from typing import Annotated, Any, Protocol
from uuid import UUID, uuid5

import uvicorn
from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Path,
    Query,
    Request,
    Security,
)
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from loguru import logger
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from sse_starlette import EventSourceResponse

from contracts.agent import AgentError, Reply
from contracts.memory import (
    MAX_JSON_DEPTH,
    Cursor,
    InvalidCursorError,
    Memory,
    MemoryQuery,
    Order,
)
from contracts.models import ModelError
from contracts.storage import InvalidMemoryError, StorageUnavailableError
from host.agents import AgentManager, UnknownAgentError
from host.http_docs import assets_router, docs_router, document
from host.http_manage import manage_router
from host.memory import json_limit_problem, nesting_depth
from host.runtime import AgentRuntime, agent_id_for
from host.secrets import scrub

__all__ = [
    "API_KEY_HEADER",
    "AgentInfo",
    "Dispatch",
    "HttpServer",
    "HttpSettingsLike",
    "MemoryPage",
    "MessageIn",
    "app_from_settings",
    "create_app",
    "include_guarded",
]

API_KEY_HEADER = "X-API-Key"
DEFAULT_MAX_BODY = 1_048_576
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{32}$"
"""The shape of a memory cursor (`Cursor.encode`: 24 bytes, URL-safe base64 unpadded)."""

_log = logger.bind(component="http")

_RESERVED_CONTENT = frozenset({"text", "name", "source", "room_id", "entity_id"})
_REPLY_EXCLUDE: dict[str, Any] = {"reply": {"embedding"}}
"""A reply's embedding stays out of responses (hundreds of floats no client reads)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class MessageIn(BaseModel):
    """A message to an agent. Without `room_id` / `entity_id`, ones derived from `user` are used
    (so one user keeps one conversation)."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=100_000)
    room_id: UUID | None = None
    entity_id: UUID | None = None
    user: str = Field(default="user", min_length=1, max_length=200)
    """The sender's display name."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Extra content fields stored with the message (e.g. ``channel_type``); not ``text``,
    ``name`` or ``source``, which the API sets (from `text`, `user`, and ``http``)."""

    @field_validator("metadata")
    @classmethod
    def _not_reserved(cls, value: dict[str, Any]) -> dict[str, Any]:
        taken = sorted(set(value) & _RESERVED_CONTENT)
        if taken:
            raise ValueError(
                f"{', '.join(taken)} cannot be set in metadata (the API sets text from `text`,"
                " name from `user`, source to http; room_id and entity_id are fields of the body)"
            )
        problem = json_limit_problem(value)  # nested or long past what a memory may hold
        if problem is not None:
            raise ValueError(f"metadata {problem}")
        try:  # nested values are not validated as str: a lone surrogate would fail the store
            json.dumps(value, ensure_ascii=False).encode()
        except UnicodeEncodeError as exc:
            raise ValueError(f"metadata is not valid Unicode text: {exc.reason}") from exc
        return value


class AgentInfo(BaseModel):
    id: UUID
    name: str
    username: str | None
    running: bool
    bio: list[str]


class MemoryOut(BaseModel):
    id: UUID
    agent_id: UUID
    entity_id: UUID
    room_id: UUID
    content: dict[str, Any]
    created_at: str
    cursor: str


class MemoryPage(BaseModel):
    items: list[MemoryOut]
    next_cursor: str | None
    """Pass as ``cursor`` to get the next page; None on the last page."""


class ErrorOut(BaseModel):
    detail: str


class _EchoJSONResponse(JSONResponse):
    """JSON for a response that echoes the client's input (a 422): Python's JSON parser accepts
    what Starlette's renderer refuses (a lone surrogate ``"\\ud800"``, ``NaN``), which made the
    422 a 500. Non-ASCII is escaped and non-finite numbers are given as strings."""

    def render(self, content: Any) -> bytes:
        return json.dumps(_finite(content), allow_nan=False, separators=(",", ":")).encode()


def _echoable(error: Any) -> Any:
    """A validation error whose echoed ``input`` is nested too deep to encode (the renderers
    recurse) carries a note instead."""
    if (
        isinstance(error, dict)
        and nesting_depth(error.get("input"), MAX_JSON_DEPTH) > MAX_JSON_DEPTH
    ):
        return {**error, "input": f"(not echoed: nested deeper than {MAX_JSON_DEPTH} levels)"}
    return error


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _memory_out(memory: Memory) -> MemoryOut:
    return MemoryOut(
        id=memory.id,
        agent_id=memory.agent_id,
        entity_id=memory.entity_id,
        room_id=memory.room_id,
        content=memory.content.model_dump(),
        created_at=memory.created_at.isoformat(),
        cursor=memory.cursor.encode(),
    )


class _BodyLimit:
    """ASGI middleware answering 413 to bodies over `limit` bytes (declared or streamed)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    await self._reject(send)
                    return
        seen = 0
        started = rejected = False

        async def limited_receive() -> Message:
            nonlocal seen, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Answer 413 now and tell the app the client left: whatever it tries to
                    # send afterwards is dropped.
                    rejected = True
                    if not started:
                        await self._reject(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if rejected:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps(
            {"detail": f"request body larger than the limit of {self.limit} bytes"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


_KEY_HEADER = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)
_BEARER = HTTPBearer(auto_error=False)


async def _require_key(
    request: Request,
    given: Annotated[str | None, Security(_KEY_HEADER)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
) -> None:
    expected: str | None = request.app.state.api_key
    if expected is None:
        return
    for key in (given, bearer.credentials if bearer is not None else None):
        if key is not None and secrets.compare_digest(key.encode(), expected.encode()):
            return
    raise HTTPException(
        401,
        detail=f"missing or wrong API key (send it as {API_KEY_HEADER}: <key> or"
        " Authorization: Bearer <key>)",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _agent_runtime(
    request: Request, agent: Annotated[str, Path(description="name, username or id")]
) -> AgentRuntime:
    agents: AgentManager = request.app.state.agents
    try:
        return agents.get(agent)
    except UnknownAgentError as exc:
        raise HTTPException(404, detail=str(exc)) from exc


Runtime = Annotated[AgentRuntime, Depends(_agent_runtime)]
"""A route parameter resolved to the running agent named in the path (404 if none)."""

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Cluster mode: a request sent again with the same key is the same message.",
    ),
]


class ReplyStreamLike(Protocol):
    reply: Reply | None

    def __aiter__(self) -> AsyncIterator[str]: ...

    async def aclose(self) -> None: ...


class Dispatch(Protocol):
    """Where the message routes send messages instead of the agent's runtime (cluster mode
    queues them for a worker: `host.cluster.dispatch.ClusterDispatch`)."""

    async def process(self, runtime: AgentRuntime, message: Memory, key: str | None) -> Reply: ...

    def stream(
        self, runtime: AgentRuntime, message: Memory, key: str | None
    ) -> ReplyStreamLike: ...


def create_app(
    agents: AgentManager,
    *,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    title: str = "agenthost",
    dispatch: Dispatch | None = None,
) -> FastAPI:
    """The API over `agents`; `api_key` (when not None) guards every route but ``/health``."""
    app = FastAPI(
        title=title,
        description="Talk to the agents this host runs.",
        version="1",
        responses={404: {"model": ErrorOut}},
        openapi_url=None,  # served below, behind the API key like every route but /health
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(_BodyLimit, limit=max_body_bytes)
    app.state.agents = agents
    app.state.api_key = api_key

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    guarded = APIRouter()

    @guarded.get("/ready", tags=["ops"], responses={503: {"model": ErrorOut}})
    async def ready() -> dict[str, Any]:
        """Readiness: at least one agent runs and its store answers."""
        running = agents.running
        if not running:
            raise HTTPException(503, detail="no agent is running")
        try:
            async with asyncio.timeout(5):
                await running[0].database.count_memories(MemoryQuery(limit=0))
        except Exception as exc:
            raise HTTPException(503, detail=f"memory store not ready: {scrub(str(exc))}") from exc
        return {"status": "ready", "agents": [r.name for r in running]}

    @guarded.get("/agents", tags=["agents"])
    async def list_agents() -> list[AgentInfo]:
        """Configured agents, running or not."""
        return [_info(agents, c.name) for c in agents.characters]

    @guarded.get("/agents/{agent}", tags=["agents"])
    async def get_agent(runtime: Runtime) -> AgentInfo:
        return _info(agents, runtime.name)

    @guarded.post(
        "/agents/{agent}/messages", tags=["messages"], response_model_exclude=_REPLY_EXCLUDE
    )
    async def send_message(runtime: Runtime, body: MessageIn, key: IdempotencyKey = None) -> Reply:
        """Process the message and return the agent's reply (without its embedding)."""
        if dispatch is not None:
            return await dispatch.process(runtime, _incoming(runtime, body), key)
        return await runtime.process_message(_incoming(runtime, body))

    @guarded.post("/agents/{agent}/messages/stream", tags=["messages"])
    async def stream_message(
        runtime: Runtime, body: MessageIn, key: IdempotencyKey = None
    ) -> EventSourceResponse:
        """Server-sent events: ``chunk`` events ({"text"}) as the model streams, then one
        ``reply`` event with the whole `Reply` (or one ``error`` event)."""
        message = _incoming(runtime, body)

        async def events() -> AsyncIterator[dict[str, str]]:
            stream: ReplyStreamLike = (
                runtime.stream_message(message)
                if dispatch is None
                else dispatch.stream(runtime, message, key)
            )
            try:
                async for chunk in stream:
                    yield {"event": "chunk", "data": json.dumps({"text": chunk})}
            except Exception as exc:
                _log.opt(exception=exc).error("streamed reply failed: {}", exc)
                yield {"event": "error", "data": json.dumps({"detail": scrub(str(exc))})}
                return
            finally:
                await stream.aclose()
            assert stream.reply is not None
            yield {"event": "reply", "data": stream.reply.model_dump_json(exclude=_REPLY_EXCLUDE)}

        return EventSourceResponse(events())

    @guarded.get("/agents/{agent}/rooms/{room_id}/memories", tags=["memories"])
    async def room_memories(
        runtime: Runtime,
        room_id: UUID,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[
            str | None,
            Query(description="next_cursor of the last page (opaque)", pattern=CURSOR_PATTERN),
        ] = None,
        order: Annotated[Order, Query()] = "desc",
    ) -> MemoryPage:
        """The room's memories of this agent, newest first by default, `limit` per page."""
        try:
            after = Cursor.decode(cursor) if cursor else None
        except InvalidCursorError as exc:
            raise HTTPException(
                422,
                detail=[{"loc": ["query", "cursor"], "msg": str(exc), "type": "value_error"}],
            ) from exc
        rows = await runtime.database.get_memories(
            MemoryQuery(
                agent_id=runtime.agent_id,
                room_id=room_id,
                order=order,
                limit=limit + 1,
                after=after,
            )
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return MemoryPage(
            items=[_memory_out(m) for m in rows],
            next_cursor=rows[-1].cursor.encode() if more and rows else None,
        )

    @guarded.get("/openapi.json", include_in_schema=False)
    async def openapi() -> dict[str, Any]:
        return app.openapi()

    guarded.include_router(docs_router(title))
    include_guarded(app, guarded)
    include_guarded(app, manage_router())
    app.include_router(assets_router())
    document(app)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: Exception) -> JSONResponse:
        """FastAPI's 422 (``{"detail": [{"loc", "msg", "input", ...}]}``), encodable whatever
        the input."""
        assert isinstance(exc, RequestValidationError)
        errors = [_echoable(error) for error in exc.errors()]
        if errors and all(error.get("type") == "json_invalid" for error in errors):
            where = ", ".join(f"{e['ctx'].get('error', e['msg'])}" for e in errors if "ctx" in e)
            return JSONResponse(
                {"detail": f"the body is not valid JSON: {where or errors[0]['msg']}"},
                status_code=400,
            )
        return _EchoJSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)

    @app.exception_handler(InvalidMemoryError)
    async def invalid_memory(_request: Request, exc: Exception) -> JSONResponse:
        """The store refused the message's memory (its content past the limits, though each
        field was within them): a 422 naming the field, as for the body's own fields."""
        assert isinstance(exc, InvalidMemoryError)
        error = {"loc": ["body"], "msg": str(exc), "type": "value_error", "field": exc.field}
        return JSONResponse({"detail": [error]}, status_code=422)

    @app.exception_handler(UnknownAgentError)
    async def unknown_agent(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(ModelError)
    async def model_failed(_request: Request, exc: Exception) -> JSONResponse:
        """The agent's model failed (every provider, or a non-retryable error): 502, why."""
        _log.warning("model call failed: {}", exc)
        detail = f"the agent's model failed: {scrub(str(exc))}"
        return JSONResponse({"detail": detail}, status_code=502)

    @app.exception_handler(StorageUnavailableError)
    async def store_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        """The memory store's server cannot be reached (an outage): 503 naming it and why."""
        _log.warning("memory store unavailable: {}", exc)
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(AgentError)
    async def agent_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        """E.g. the agent was stopped while the message waited for its room: 503."""
        return JSONResponse({"detail": scrub(str(exc))}, status_code=503)

    return app


def include_guarded(app: FastAPI, router: APIRouter) -> None:
    """Mount `router` on `app` behind the API key check (every route but ``/health`` is; the
    host mounts ``/metrics``, ``/stats`` and the dev reload route this way)."""
    app.include_router(router, dependencies=[Depends(_require_key)])


def _info(agents: AgentManager, name: str) -> AgentInfo:
    character = next(c for c in agents.characters if c.name == name)
    return AgentInfo(
        id=agent_id_for(character.name),
        name=character.name,
        username=character.username,
        running=agents.find(character.name) is not None,
        bio=character.bio,
    )


def _incoming(runtime: AgentRuntime, body: MessageIn) -> Memory:
    entity = body.entity_id or uuid5(runtime.agent_id, f"user:{body.user}")
    room = body.room_id or uuid5(runtime.agent_id, f"room:{entity}")
    return runtime.new_message(
        body.text, room_id=room, entity_id=entity, name=body.user, source="http", **body.metadata
    )


class HttpSettingsLike(Protocol):
    """The config ``http`` section as this module reads it."""

    host: str
    port: int
    api_key: SecretStr | None
    max_body_bytes: int


def app_from_settings(
    agents: AgentManager, settings: HttpSettingsLike, dispatch: Dispatch | None = None
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
            sock = socket.create_server(
                (host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET
            )
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
