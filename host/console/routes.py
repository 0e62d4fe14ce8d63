"""Installing the console on the HTTP app (at its first request: `host.console.mount`): its
state, its static assets and the routers of its pages.

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

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from . import agents, chat, login, memories, metrics, plugins, timeline
from .headers import SECURITY_HEADERS, console_path
from .state import Console

if TYPE_CHECKING:
    from host.app import Host

__all__ = ["ROUTERS", "SECURITY_HEADERS", "Console", "console_path", "install"]

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


def install(app: FastAPI, host: Host) -> None:
    """Install the console on `app` (at its first request, by `host.console.mount`): its state,
    ``/console/static`` (vendored htmx; public, it holds no data) and its pages' routers."""
    app.state.console = Console(host)
    app.mount("/console/static", StaticFiles(directory=_HERE / "static"), name="console-static")
    for router in ROUTERS:
        app.include_router(router)
