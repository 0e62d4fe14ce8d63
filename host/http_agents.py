"""Agents and messages: ``GET /agents``, ``GET /agents/{agent}``, ``POST
/agents/{agent}/messages`` (the `Reply`) and ``POST /agents/{agent}/messages/stream`` (the reply
as server-sent events). Starting and stopping agents: `host.http_manage`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID, uuid5

from fastapi import APIRouter, Depends, Header, Response
from fastapi.exceptions import RequestValidationError
from loguru import logger
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sse_starlette import EventSourceResponse

from contracts.agent import Reply
from contracts.errors import AgentHostError
from contracts.memory import Memory
from host.agents import AgentManager
from host.http_deps import Agents, ErrorOut, Intake, ReplyStreamLike, Runtime, get_intake
from host.memory import json_limit_problem
from host.runtime import AgentRuntime, agent_id_for
from host.secrets import scrub

__all__ = ["AgentInfo", "MessageIn", "router"]

_log = logger.bind(component="http")

_RESERVED_CONTENT = frozenset({"text", "name", "source", "room_id", "entity_id"})
_REPLY_EXCLUDE: dict[str, Any] = {"reply": {"embedding"}}
"""A reply's embedding stays out of responses (hundreds of floats no client reads)."""

router = APIRouter()


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


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description=(
            "A request sent again with the same key (for this agent) is the same message: it"
            " gets the first one's reply (waiting for it if it is still running), even after a"
            " restart, and nothing is stored twice. The same key with another body is a 409."
            " Single process: keys are kept 24 hours, in `<data_dir>/ingress.sqlite3`;"
            " cluster mode: `cluster.retention` (7 days) after its answer. An older key is a new"
            " message."
        ),
    ),
]
_KEY_REUSED: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "The Idempotency-Key was used for another message."}
}
Target = Annotated[Intake, Depends(get_intake)]


@router.get("/agents", tags=["agents"])
async def list_agents(agents: Agents) -> list[AgentInfo]:
    """Configured agents, running or not."""
    return [_info(agents, c.name) for c in agents.characters]


@router.get("/agents/{agent}", tags=["agents"])
async def get_agent(agents: Agents, runtime: Runtime) -> AgentInfo:
    return _info(agents, runtime.name)


@router.post(
    "/agents/{agent}/messages",
    tags=["messages"],
    responses=_KEY_REUSED,
    response_model=Reply,
    response_model_exclude=_REPLY_EXCLUDE,
)
async def send_message(
    runtime: Runtime, body: MessageIn, to: Target, key: IdempotencyKey = None
) -> Response:
    """Process the message and return the agent's reply (without its embedding)."""
    if to.dispatch is not None:
        reply = await to.dispatch.process(runtime, _incoming(runtime, body), key)
    elif key is not None and to.ingress is not None:
        reply = await to.ingress.process(runtime, _incoming(runtime, body), key)
    else:
        message = _incoming(runtime, body)
        if to.ingress is not None:
            await to.ingress.after_keyed(runtime, message.room_id)
        reply = await runtime.process_message(message)
    # serialized once, as the schema says: FastAPI would validate the Reply again first
    return Response(reply.model_dump_json(exclude=_REPLY_EXCLUDE), media_type="application/json")


@router.post("/agents/{agent}/messages/stream", tags=["messages"], responses=_KEY_REUSED)
async def stream_message(
    runtime: Runtime, body: MessageIn, to: Target, key: IdempotencyKey = None
) -> EventSourceResponse:
    """Server-sent events: ``chunk`` events ({"text"}) as the model streams, then one
    ``reply`` event with the whole `Reply` (or one ``error`` event)."""
    message = _incoming(runtime, body)
    stream: ReplyStreamLike
    if to.dispatch is not None:
        stream = await to.dispatch.stream(runtime, message, key)
    elif key is not None and to.ingress is not None:
        stream = await to.ingress.stream(runtime, message, key)
    else:
        if to.ingress is not None:
            await to.ingress.after_keyed(runtime, message.room_id)
        stream = runtime.stream_message(message)
    return EventSourceResponse(_events(stream))


async def _events(stream: ReplyStreamLike) -> AsyncIterator[dict[str, str]]:
    try:
        async for chunk in stream:
            yield {"event": "chunk", "data": json.dumps({"text": chunk})}
    except Exception as exc:
        # a failure the engine names (a model's, a timeout) is said in a line; any other is
        # a bug, with its traceback
        trace = None if isinstance(exc, AgentHostError | TimeoutError) else exc
        _log.opt(exception=trace).error("streamed reply failed: {}", scrub(str(exc)))
        yield {"event": "error", "data": json.dumps({"detail": scrub(str(exc))})}
        return
    finally:
        await stream.aclose()
    assert stream.reply is not None
    yield {"event": "reply", "data": stream.reply.model_dump_json(exclude=_REPLY_EXCLUDE)}


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
    if body.entity_id == runtime.agent_id:  # it would be the agent's own line in its history
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "entity_id"),
                    "msg": f"is the id of agent {runtime.name} itself: a message to an agent"
                    " comes from someone else",
                    "type": "value_error",
                    "input": str(body.entity_id),
                }
            ]
        )
    entity = body.entity_id or uuid5(runtime.agent_id, f"user:{body.user}")
    room = body.room_id or uuid5(runtime.agent_id, f"room:{entity}")
    return runtime.new_message(
        body.text, room_id=room, entity_id=entity, name=body.user, source="http", **body.metadata
    )
