"""Mounting the console on the HTTP app: its state, its security headers, its static assets,
the routers of its pages and the answers to a request that is not let in.

Each page or area has its own module-level router (`login`, `chat`, `agents`, `plugins`,
`memories`, `timeline`, `metrics`), reaching the app's `Console` and the request's `Auth`
through the dependencies of `host.console.deps`: every route goes through `authenticate`
(API key header, or the session of ``/login``; CSRF token on state changes). Templates
autoescape everything they render: memories, characters, plugin errors and model text are
shown as text, never as markup.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from . import agents, chat, login, memories, metrics, plugins, timeline
from .auth import Auth, LoginRequired, Refused
from .headers import SECURITY_HEADERS, SecurityHeaders, console_path
from .state import Console

if TYPE_CHECKING:
    from host.app import Host

__all__ = ["ROUTERS", "SECURITY_HEADERS", "Console", "console_path", "mount_console"]

_HERE = Path(__file__).parent

ROUTERS = (
    login.router,
    chat.router,
    agents.router,
    plugins.router,
    memories.router,
    timeline.router,
    metrics.router,
)
"""The console's routers, in the order they are included."""


def mount_console(app: FastAPI, host: Host) -> None:
    """Serve the console on `app`: ``/`` (chat), ``/console/*`` pages and fragments, and
    ``/console/static`` (vendored htmx; public, it holds no data)."""
    console = Console(host)
    app.state.console = console
    app.add_middleware(SecurityHeaders)
    app.mount("/console/static", StaticFiles(directory=_HERE / "static"), name="console-static")
    for router in ROUTERS:
        app.include_router(router)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _exc: Exception) -> Response:
        stream = request.url.path.startswith("/console/stream/")  # an EventSource
        fragment = request.headers.get("hx-request") or stream
        if fragment or request.method != "GET":
            return JSONResponse(
                {"detail": "log in to the console (or send the API key)"},
                status_code=401,
                headers={"HX-Redirect": "/login"},
            )
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Exception) -> Response:
        """403: a fragment saying why for htmx (it swaps 4xx answers in, escaped like every
        value: the reason may quote a request header), JSON for anything else."""
        if request.headers.get("hx-request"):
            return console.problem(request, Auth(None), str(exc), status=403)
        return JSONResponse({"detail": str(exc)}, status_code=403)
