"""What the HTTP routers share: the app's state reached through FastAPI dependencies, the API
key check, and the agent named in a route's path.

`host.http.create_app` puts the state on ``app.state`` (`agents`, `api_key`, `dispatch`,
`ingress`, `title`; the host adds `host`, `telemetry`, `container` when it mounts its own
routes), so the routers of ``host/http_*.py`` are module-level `APIRouter`s that read it per
request instead of closures built per app.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Protocol

from fastapi import Depends, HTTPException, Path, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from contracts.agent import Reply
from contracts.memory import Memory
from host.agents import AgentManager, UnknownAgentError
from host.runtime import AgentRuntime

if TYPE_CHECKING:
    from host.app import Host
    from host.http_idempotency import LocalIngress

__all__ = [
    "API_KEY_HEADER",
    "Agents",
    "Dispatch",
    "ErrorOut",
    "Intake",
    "ReplyStreamLike",
    "Runtime",
    "agent_runtime",
    "get_agents",
    "get_host",
    "get_intake",
    "require_key",
]

API_KEY_HEADER = "X-API-Key"


class ErrorOut(BaseModel):
    detail: str


class ReplyStreamLike(Protocol):
    reply: Reply | None

    def __aiter__(self) -> AsyncIterator[str]: ...

    async def aclose(self) -> None: ...


class Dispatch(Protocol):
    """Where the message routes send messages instead of the agent's runtime (cluster mode
    queues them for a worker: `host.cluster.dispatch.ClusterDispatch`)."""

    async def process(self, runtime: AgentRuntime, message: Memory, key: str | None) -> Reply: ...

    async def stream(
        self, runtime: AgentRuntime, message: Memory, key: str | None
    ) -> ReplyStreamLike: ...


_KEY_HEADER = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)
_BEARER = HTTPBearer(auto_error=False)


async def require_key(
    request: Request,
    given: Annotated[str | None, Security(_KEY_HEADER)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
) -> None:
    """401 unless the request carries the app's API key (nothing to check when it has none)."""
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


def _agents(request: Request) -> AgentManager:
    agents: AgentManager = request.app.state.agents
    return agents


async def get_agents(request: Request) -> AgentManager:
    return _agents(request)


@dataclass(frozen=True, slots=True)
class Intake:
    """Where the message routes hand a message: `dispatch` in cluster mode, else the agent's
    runtime, through `ingress` when the request has an ``Idempotency-Key``."""

    dispatch: Dispatch | None
    ingress: LocalIngress | None


async def get_intake(request: Request) -> Intake:
    state = request.app.state
    return Intake(state.dispatch, state.ingress)


async def get_host(request: Request) -> Host:
    """The `Host` serving the app (its own routes only: set by `host.http.mount_host_routes`)."""
    host: Host = request.app.state.host
    return host


Agents = Annotated[AgentManager, Depends(get_agents)]


async def agent_runtime(
    request: Request, agent: Annotated[str, Path(description="name, username or id")]
) -> AgentRuntime:
    # the manager read here rather than through `get_agents`: each dependency costs
    try:
        return _agents(request).get(agent)
    except UnknownAgentError as exc:
        raise HTTPException(404, detail=str(exc)) from exc


Runtime = Annotated[AgentRuntime, Depends(agent_runtime)]
"""A route parameter resolved to the running agent named in the path (404 if none)."""

# The dependencies are coroutines although none awaits: FastAPI runs a plain function in its
# thread pool, a thread round trip per dependency and request (bench/http_load.py's profile).
