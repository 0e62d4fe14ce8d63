"""What the HTTP API answers to bad input and failures: the body size limit (413, ASGI
middleware), malformed JSON (400), invalid fields (422, whatever the input echoed), and the
errors of the engine mapped to their status (404 unknown agent, 502 model failed, 503 store
unreachable or agent stopped, 409 an ``Idempotency-Key`` reused for another message). Never
a traceback, never a 500 for bad input.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from loguru import logger
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.agent import AgentError
from contracts.memory import MAX_JSON_DEPTH
from contracts.models import ModelError
from contracts.storage import InvalidMemoryError, StorageUnavailableError
from host.agents import UnknownAgentError
from host.http_idempotency import KeyReused
from host.memory import nesting_depth
from host.secrets import scrub

__all__ = ["BodyLimit", "install_error_handlers"]

_log = logger.bind(component="http")


class BodyLimit:
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


async def invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 (``{"detail": [{"loc", "msg", "input", ...}]}``), encodable whatever the
    input; a body that is not JSON is a 400."""
    assert isinstance(exc, RequestValidationError)
    errors = [_echoable(error) for error in exc.errors()]
    if errors and all(error.get("type") == "json_invalid" for error in errors):
        where = ", ".join(f"{e['ctx'].get('error', e['msg'])}" for e in errors if "ctx" in e)
        return JSONResponse(
            {"detail": f"the body is not valid JSON: {where or errors[0]['msg']}"},
            status_code=400,
        )
    return _EchoJSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


async def invalid_memory(_request: Request, exc: Exception) -> JSONResponse:
    """The store refused the message's memory (its content past the limits, though each field
    was within them): a 422 naming the field, as for the body's own fields."""
    assert isinstance(exc, InvalidMemoryError)
    error = {"loc": ["body"], "msg": str(exc), "type": "value_error", "field": exc.field}
    return JSONResponse({"detail": [error]}, status_code=422)


async def unknown_agent(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=404)


async def model_failed(_request: Request, exc: Exception) -> JSONResponse:
    """The agent's model failed (every provider, or a non-retryable error): 502, why."""
    _log.warning("model call failed: {}", exc)
    detail = f"the agent's model failed: {scrub(str(exc))}"
    return JSONResponse({"detail": detail}, status_code=502)


async def store_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    """The memory store's server cannot be reached (an outage): 503 naming it and why."""
    _log.warning("memory store unavailable: {}", exc)
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})


async def agent_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    """E.g. the agent was stopped while the message waited for its room: 503."""
    return JSONResponse({"detail": scrub(str(exc))}, status_code=503)


async def key_reused(_request: Request, exc: Exception) -> JSONResponse:
    """An ``Idempotency-Key`` sent again with another message: 409, naming the header."""
    return JSONResponse({"detail": str(exc)}, status_code=409)


def install_error_handlers(app: FastAPI) -> None:
    """Register the answers above on `app`."""
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(InvalidMemoryError, invalid_memory)
    app.add_exception_handler(UnknownAgentError, unknown_agent)
    app.add_exception_handler(ModelError, model_failed)
    app.add_exception_handler(StorageUnavailableError, store_unavailable)
    app.add_exception_handler(KeyReused, key_reused)
    app.add_exception_handler(AgentError, agent_unavailable)
