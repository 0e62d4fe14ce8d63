"""A local server speaking the OpenAI HTTP protocol (what the openai plugin is tested against).

It answers chat completions (plain, streamed as server-sent events, JSON-schema output) and
embeddings deterministically, records each request, and can be told to fail with a status.
"""

from __future__ import annotations

import hashlib
import json
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
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


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

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await record(request)
        if isinstance(body, Response):
            return body
        text = _reply_for(body["messages"])
        usage = {"prompt_tokens": 7, "completion_tokens": len(text.split()), "total_tokens": 0}
        schema = (body.get("response_format") or {}).get("json_schema")
        if schema is not None:
            text = json.dumps({"city": "Lyon", "degrees": 21})
        if body.get("stream"):

            async def events() -> AsyncIterator[str]:
                for word in text.split(" "):
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
            {"object": "embedding", "index": i, "embedding": _vector(t)}
            for i, t in enumerate(inputs)
        ]
        return {"data": list(reversed(rows)), "model": body["model"], "usage": {"prompt_tokens": 3}}

    return app
