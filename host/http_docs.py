"""The API's documentation: the OpenAPI schema completed with what middleware and the
exception handlers answer, and ``/docs`` (Swagger UI) served from vendored files.

FastAPI documents what a route returns and its 422; it cannot see the API key check (401), the
body size limit (413) or the malformed-JSON answer (400), and it documents a streamed route as
JSON. `document` completes the schema on its first build; `docs_router` serves it and Swagger
UI from ``host/static/swagger-ui`` (npm package ``swagger-ui-dist``), so ``/docs`` works offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import (
    validation_error_definition,
    validation_error_response_definition,
)
from fastapi.responses import FileResponse, HTMLResponse

__all__ = [
    "ASSETS",
    "ASSETS_PREFIX",
    "SSE_ROUTES",
    "assets_router",
    "complete",
    "docs_router",
    "document",
]

ASSETS = Path(__file__).resolve().parent / "static" / "swagger-ui"
ASSETS_PREFIX = "/docs/assets"
_ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}

SSE_ROUTES: dict[str, str] = {
    "/agents/{agent}/messages/stream": (
        'Server-sent events: `chunk` events (data: {"text": ...}) as the model streams, then'
        ' one `reply` event (data: the Reply as JSON) or one `error` event (data: {"detail"}).'
    ),
}
"""Routes answering ``text/event-stream`` (path: description of the stream)."""

_SSE_EVENT = {
    "description": "One server-sent event (each is validated on its own).",
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["chunk", "reply", "error"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
    "required": ["event", "data"],
}
_ERROR = {"$ref": "#/components/schemas/ErrorOut"}
_ERROR_SCHEMA = {
    "title": "ErrorOut",
    "type": "object",
    "properties": {"detail": {"title": "Detail", "type": "string"}},
    "required": ["detail"],
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


UNAUTHORIZED = _error(
    "Missing or wrong API key (when `http.api_key` is set): send it as `X-API-Key: <key>` or"
    " `Authorization: Bearer <key>`."
)
MALFORMED = _error("The body is not JSON (or not UTF-8).")
NOT_HTTP = "Invalid HTTP request received."
"""The server's plain-text answer to a request its HTTP parser (httptools) refuses: a header or
the request line with characters HTTP/1.1 does not allow, before any route runs."""
_NOT_HTTP_CONTENT = {"text/plain": {"schema": {"type": "string", "example": NOT_HTTP}}}
TOO_LARGE = _error("The body is larger than `http.max_body_bytes`.")
UNPROCESSABLE = {
    "description": "A parameter or a body field is invalid: `detail` lists each with its `loc`.",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
    },
}
OPEN_PATHS = frozenset({"/health"})
"""Paths the API key does not guard."""


def _bad_request(with_body: bool) -> dict[str, Any]:
    """400: a request that is not valid HTTP (any route, plain text), or a body that is not
    JSON (routes with a body, `ErrorOut`)."""
    if not with_body:
        return {
            "description": "The request is not valid HTTP/1.1 (a header or the request line).",
            "content": dict(_NOT_HTTP_CONTENT),
        }
    return {
        "description": f"{MALFORMED['description']} Or the request is not valid HTTP/1.1.",
        "content": {**MALFORMED["content"], **_NOT_HTTP_CONTENT},
    }


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with 400/401/413/422 documented where they can be answered (400 everywhere: the
    HTTP parser refuses a malformed request before any route) and the streamed
    routes as ``text/event-stream``."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("ErrorOut", _ERROR_SCHEMA)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses: dict[str, Any] = operation["responses"]
            if path not in OPEN_PATHS:
                responses.setdefault("401", UNAUTHORIZED)
            if "requestBody" in operation:
                responses.setdefault("413", TOO_LARGE)
            responses["400"] = _bad_request("requestBody" in operation)
            if "requestBody" in operation or operation.get("parameters"):
                responses.setdefault("422", UNPROCESSABLE)
                components.setdefault("HTTPValidationError", validation_error_response_definition)
                components.setdefault("ValidationError", validation_error_definition)
            if path in SSE_ROUTES and method == "post":
                responses["200"] = {
                    "description": SSE_ROUTES[path],
                    "content": {"text/event-stream": {"schema": _SSE_EVENT}},
                }
    return schema


def document(app: FastAPI) -> None:
    """Make `app.openapi()` return the completed schema (built once, with every route the app
    has by then: the host mounts some after `create_app`)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


docs_router = APIRouter(include_in_schema=False)
"""``/openapi.json`` and ``/docs`` (Swagger UI over it, its scripts and styles served from
``/docs/assets``: nothing from a CDN; the online validator badge is off). Guarded by the API key."""

assets_router = APIRouter(include_in_schema=False)
"""The vendored Swagger UI files (public: they hold nothing of this host)."""


@docs_router.get("/openapi.json")
async def openapi(request: Request) -> dict[str, Any]:
    schema: dict[str, Any] = request.app.openapi()
    return schema


@docs_router.get("/docs")
async def docs(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title=f"{request.app.state.title} API",
        swagger_js_url=f"{ASSETS_PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PREFIX}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PREFIX}/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},
    )


@assets_router.get(ASSETS_PREFIX + "/{name}")
async def asset(name: str) -> FileResponse:
    media_type = _ASSET_TYPES.get(name)
    if media_type is None:
        raise HTTPException(404, detail=f"no asset {name!r}")
    return FileResponse(ASSETS / name, media_type=media_type)
