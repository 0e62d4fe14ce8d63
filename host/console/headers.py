"""The security headers every answer of the console's paths carries (CSP, no framing, no
sniffing, same-origin referrer), added by one middleware so no code path can miss them."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SECURITY_HEADERS", "SecurityHeaders", "console_path", "route_path"]

SECURITY_HEADERS = {
    # scripts, styles and connections from this host only, no inline script, no framing: an
    # injected tag could neither run nor load anything, and no other site can overlay the
    # console's buttons
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none';"
        " object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def console_path(path: str) -> bool:
    """Whether `path` is the console's (pages, fragments, assets, log in and out)."""
    return path in ("/", "/login", "/logout") or path.startswith("/console/")


def route_path(scope: Scope) -> str:
    """The path the app's routes match: without the ``root_path`` the app is served under
    (uvicorn's ``--root-path``, or a parent app mounting it at a prefix)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] == "/":
        return path[len(root) :]
    return path


def root_of(request: Request) -> str:
    """The prefix the app is served under (its ``root_path``, no trailing slash; "" at the
    root): what the console's links, forms and redirects start with."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


class SecurityHeaders:
    """Adds `SECURITY_HEADERS` to every response of the console's paths (pages, fragments,
    redirects, refusals, streams, assets), whichever code path made it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not console_path(route_path(scope)):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)
