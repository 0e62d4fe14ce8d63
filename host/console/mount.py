"""Mounting the console at its first request, not at start-up.

The console's pages (``/``, ``/login``, ``/logout``, ``/console/*``) are not needed to serve the
API, and importing them (their routers, the dependencies and records they read, the room index
they subscribe to the bus) cost ~30 ms of a start to ready. `mount_console` puts what must be
in place before the app's first request (the security headers middleware, the handlers of the
console's two refusals) and one route standing for every console path; the first request to a
console path imports `host.console.routes`, installs the console's routes where that route was
and is routed again. Concurrent first requests install it once (installing does not await).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from loguru import logger
from starlette.datastructures import URLPath
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from .headers import SecurityHeaders, console_path, root_of, route_path

if TYPE_CHECKING:
    from fastapi import FastAPI

    from host.app import Host

__all__ = ["LoginRequired", "Refused", "Unpicked", "mount_console"]

_log = logger.bind(component="console")


class LoginRequired(Exception):
    """No key and no session: pages redirect to ``/login``, fragments answer 401."""


class Refused(Exception):
    """A state-changing request without the session's CSRF token, or from another origin."""


class Unpicked(Exception):
    """A page's ``?agent=`` or ``?room=`` names nothing it can show: its status and why."""

    def __init__(self, text: str, status: int) -> None:
        super().__init__(text)
        self.status = status


def mount_console(app: FastAPI, host: Host) -> None:
    """Serve the console on `app`: ``/`` (chat), ``/console/*`` pages and fragments, and
    ``/console/static`` (vendored htmx; public, it holds no data), installed at the first
    request to one of them (see the module docstring)."""
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(Refused, _refused)
    app.add_exception_handler(Unpicked, _unpicked)
    app.router.routes.append(_Pending(app, host))


class _Pending(BaseRoute):
    """Every console path until the console is installed (then it is gone from the routes)."""

    def __init__(self, app: FastAPI, host: Host) -> None:
        self.app = app
        self.host = host

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and console_path(route_path(scope)):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        """No name of its own: the router goes on to the routes after it (`BaseRoute`'s
        raises NotImplementedError, a 500 from ``request.url_for`` of any name it reached)."""
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self in self.app.router.routes:
            try:
                self._install()
            except Exception as exc:
                cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                _log.opt(exception=exc).error(
                    "the console could not be installed ({}); the next request tries again",
                    cause,
                )
                unavailable = JSONResponse(
                    {"detail": "the console could not be installed (the host's log says why)"},
                    status_code=503,
                )
                await unavailable(scope, receive, send)
                return
        await self.app.router(scope, receive, send)

    def _install(self) -> None:
        """Install the console's routes where this route stands, then drop it; if installing
        fails, the routes and ``app.state`` are as they were (this route stays, to try again)."""
        routes = self.app.router.routes
        kept = list(routes)
        state = self.app.state
        had_console = hasattr(state, "console")
        try:
            from .routes import install

            install(self.app, self.host)
        except BaseException:
            routes[:] = kept
            if not had_console and hasattr(state, "console"):
                for sub in state.console.rooms.subscriptions:  # it subscribed to the bus
                    sub.cancel()
                del state.console
            raise
        at = kept.index(self)
        routes[:] = kept[:at] + routes[len(kept) :] + kept[at + 1 :]  # where this route stood


async def _login_required(request: Request, _exc: Exception) -> Response:
    """401 for a fragment, a stream or a state change; a page redirects to the login form,
    under the prefix the app is served at (its ``root_path``), back to the page after."""
    stream = route_path(request.scope).startswith("/console/stream/")  # an EventSource
    fragment = request.headers.get("hx-request") or stream
    login = f"{root_of(request)}/login"
    if fragment or request.method != "GET":
        return JSONResponse(
            {"detail": "log in to the console (or send the API key)"},
            status_code=401,
            headers={"HX-Redirect": login},
        )
    # the page's whole path: the prefix included, as the browser must ask for it again
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{login}?{urlencode({'next': target})}", status_code=303)


async def _refused(request: Request, exc: Exception) -> Response:
    """403: a fragment saying why for htmx (it swaps 4xx answers in, escaped like every value:
    the reason may quote a request header), JSON for anything else."""
    if request.headers.get("hx-request"):
        from .auth import Auth
        from .state import Console

        console: Console = request.app.state.console  # installed: only its routes refuse
        return console.problem(request, Auth(None), str(exc), status=403)
    return JSONResponse({"detail": str(exc)}, status_code=403)


async def _unpicked(request: Request, exc: Exception) -> Response:
    """A page naming an agent that does not run or a malformed room: the fragment saying so,
    with its 4xx status (htmx swaps it in; a page shows it alone)."""
    from .auth import Auth
    from .state import Console

    assert isinstance(exc, Unpicked)
    console: Console = request.app.state.console
    return console.problem(request, Auth(None), str(exc), status=exc.status)
