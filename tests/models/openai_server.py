"""A local server speaking the OpenAI HTTP protocol (what the openai plugin is tested against).

It answers chat completions (plain, streamed as server-sent events, JSON-schema output) and
embeddings deterministically, records each request, and can be told to fail with a status. It
also plays the servers the openai plugin meets for real:

- Ollama (`ollama_like`): ``/v1/models`` lists ``llama3.2:latest`` style names, ``llama3.2``
  is served as ``llama3.2:latest``, and any other name is a 404 with Ollama's error JSON;
- a rate-limiting server (`Behaviour.rate_limits`): 429 with ``Retry-After`` first;
- a slow stream (`Behaviour.chunk_delay`) and one dropped mid-way (`Behaviour.drop_after`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse


@dataclass
class Behaviour:
    fail_status: int | None = None
    fail_message: str = "injected failure"
    web_page: bool = False
    """Answer every request 200 with an HTML page (a base_url that is not the API)."""
    refuse_stream_options: bool = False
    """Answer 400 to a request with ``stream_options`` (as servers predating it do)."""
    served: list[str] | None = None
    """Names ``GET /v1/models`` lists and chat/embeddings accept (None: no listing, any name)."""
    rate_limits: list[str | None] = field(default_factory=list)
    """Answer the next requests 429, one per item, with that ``Retry-After`` (None: without)."""
    reply: str | None = None
    """Answer this text instead of echoing the last message."""
    chunk_delay: float = 0.0
    """Seconds between streamed chunks."""
    drop_after: int | None = None
    """Cut the connection after this many streamed chunks."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    """`time.monotonic()` of each request."""
    listings: int = 0
    """How many times ``/v1/models`` was asked."""
    embedding: list[Any] | None = None
    """Answer this as every input's embedding (a malformed one: what the client makes of it)."""

    def serves(self, name: str) -> bool:
        if self.served is None:
            return True
        return name in self.served or f"{name}:latest" in self.served


OLLAMA_MODELS = ["llama3.2:latest", "nomic-embed-text:latest", "qwen2.5:7b", "llama3.1:8b"]


def ollama_like() -> Behaviour:
    """An Ollama server with three chat models and one embedding model pulled."""
    return Behaviour(served=list(OLLAMA_MODELS))


class _Dropped(Exception):
    """Raised inside a stream to cut the connection (the server closes it mid-body)."""


def _reply_for(messages: list[dict[str, str]]) -> str:
    last = messages[-1]["content"] if messages else ""
    return f"echo: {last}"


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [b / 255 for b in digest[:8]]


def protocol_app(behaviour: Behaviour) -> FastAPI:
    app = FastAPI()

    async def record(request: Request) -> dict[str, Any] | Response:
        body: dict[str, Any] = await request.json()
        behaviour.requests.append(body)
        behaviour.headers.append(dict(request.headers))
        behaviour.times.append(time.monotonic())
        if behaviour.rate_limits:
            wait = behaviour.rate_limits.pop(0)
            limited = {
                "message": "Rate limit reached for requests",
                "type": "requests",
                "code": "rate_limit_exceeded",
            }
            headers = {} if wait is None else {"Retry-After": wait}
            return JSONResponse({"error": limited}, status_code=429, headers=headers)
        if not behaviour.serves(str(body.get("model"))):
            # Ollama's OpenAI-compatible endpoints, for a model that was not pulled
            message = f'model "{body.get("model")}" not found, try pulling it first'
            error = {"message": message, "type": "api_error", "param": None, "code": None}
            return JSONResponse({"error": error}, status_code=404)
        if behaviour.web_page:
            return Response("<html><body>Welcome</body></html>", media_type="text/html")
        if behaviour.refuse_stream_options and "stream_options" in body:
            message = "Unrecognized request argument supplied: stream_options"
            error = {"message": message, "type": "invalid_request_error"}
            return JSONResponse({"error": error}, status_code=400)
        if behaviour.fail_status is not None:
            return JSONResponse(
                {"error": {"message": behaviour.fail_message, "type": "server_error"}},
                status_code=behaviour.fail_status,
            )
        return body

    @app.get("/v1/models")
    async def models() -> Any:
        behaviour.listings += 1
        if behaviour.served is None:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        rows = [
            {"id": name, "object": "model", "created": 1733000000, "owned_by": "library"}
            for name in behaviour.served
        ]
        return {"object": "list", "data": rows}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await record(request)
        if isinstance(body, Response):
            return body
        text = behaviour.reply or _reply_for(body["messages"])
        usage = {"prompt_tokens": 7, "completion_tokens": len(text.split()), "total_tokens": 0}
        schema = (body.get("response_format") or {}).get("json_schema")
        if schema is not None:
            text = json.dumps({"city": "Lyon", "degrees": 21})
        if body.get("stream"):

            async def events() -> AsyncIterator[str]:
                for sent, word in enumerate(text.split(" ")):
                    if sent == behaviour.drop_after:
                        raise _Dropped("connection cut by the test server")
                    if behaviour.chunk_delay and sent:
                        await asyncio.sleep(behaviour.chunk_delay)
                    delta = {"choices": [{"index": 0, "delta": {"content": word + " "}}]}
                    yield json.dumps(delta)
                yield json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                if (body.get("stream_options") or {}).get("include_usage"):
                    yield json.dumps({"choices": [], "usage": usage})
                yield "[DONE]"

            return EventSourceResponse(events())
        return {
            "id": "chatcmpl-1",
            "model": body["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text},
                 "finish_reason": "stop"}
            ],
            "usage": usage,
        }  # fmt: skip

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Any:
        body = await record(request)
        if isinstance(body, Response):
            return body
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        rows = [
            {
                "object": "embedding",
                "index": i,
                "embedding": _vector(t) if behaviour.embedding is None else behaviour.embedding,
            }
            for i, t in enumerate(inputs)
        ]
        return {"data": list(reversed(rows)), "model": body["model"], "usage": {"prompt_tokens": 3}}

    return app
