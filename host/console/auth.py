"""Who may use the console: the API key, once, then a browser session with a CSRF token.

A browser cannot put the ``X-API-Key`` header on a page load or an EventSource, so the key is
typed once on ``/login`` and exchanged for a session: a random id in an ``HttpOnly``,
``SameSite=Strict`` cookie, kept in this process only (a restart logs everyone out). A request
carrying the key in ``X-API-Key`` is accepted as well (scripts, tests).

Cookies ride along on cross-site requests that SameSite does not stop (same-site subdomains,
older browsers), so every state-changing request made with the cookie (POST, DELETE) must also
carry the session's CSRF token in the ``X-CSRF-Token`` header, which htmx sends from the page's
``<meta name="csrf-token">`` (``console.js``): another site can neither read the token nor set a
custom header without a CORS preflight, which this server never grants. A request with an
``Origin`` other than this server's, or that a browser marks as cross-site (``Sec-Fetch-Site``),
is refused too. Without an API key configured the console is open like the API, and still
issues a session on the first page so that CSRF holds; it then answers only under this
machine's addresses (no DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request

from host.http import API_KEY_HEADER

from .mount import LoginRequired, Refused

__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "Auth",
    "LoginRequired",
    "Refused",
    "Session",
    "Sessions",
    "authenticate",
    "check_host",
    "check_origin",
    "key_matches",
]

SESSION_COOKIE = "agenthost_console"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    csrf: str
    created: float


class Sessions:
    """The console's sessions, in memory, oldest dropped beyond `limit`, expired after `ttl`."""

    def __init__(self, *, limit: int = 1000, ttl: float = 12 * 3600, bound: str = "") -> None:
        self.limit = limit
        self.ttl = ttl
        self.bound = bound
        """The host name the server is bound to (`check_host` accepts it)."""
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def new(self) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), time.monotonic())
        self._sessions[session.id] = session
        while len(self._sessions) > self.limit:
            self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if time.monotonic() - session.created > self.ttl:
            del self._sessions[session_id]
            return None
        return session

    def drop(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)


@dataclass(frozen=True, slots=True)
class Auth:
    """How a console request was let in."""

    session: Session | None
    """The browser session (None when the key came in the header)."""
    new: bool = False
    """The session was made for this request (no API key configured): set its cookie."""

    @property
    def csrf(self) -> str:
        return self.session.csrf if self.session is not None else ""


def key_matches(expected: str, given: str | None) -> bool:
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())


def authenticate(request: Request, sessions: Sessions) -> Auth:
    """Let the request in (`Auth`) or raise `LoginRequired` / `Refused`."""
    expected: str | None = request.app.state.api_key
    if expected is not None and key_matches(expected, request.headers.get(API_KEY_HEADER)):
        return Auth(None)
    if expected is None:
        check_host(request, sessions.bound)
    session = sessions.get(request.cookies.get(SESSION_COOKIE))
    if session is None:
        if expected is not None:
            raise LoginRequired
        if request.method not in SAFE_METHODS:
            raise Refused("no console session: load a console page first")
        return Auth(sessions.new(), new=True)
    if request.method not in SAFE_METHODS:
        check_origin(request)
        given = request.headers.get(CSRF_HEADER)
        if given is None or not secrets.compare_digest(given.encode(), session.csrf.encode()):
            raise Refused(f"missing or wrong CSRF token (send it in the {CSRF_HEADER} header)")
    return Auth(session)


def check_origin(request: Request) -> None:
    """`Refused` when the request comes from another site: an ``Origin`` that is not this
    server, or a browser's ``Sec-Fetch-Site`` saying so (sent even where ``Origin`` is not)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Refused(f"request from another site refused (Sec-Fetch-Site: {site})")
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = request.headers.get("host", "")
    if urlsplit(origin).netloc != host:
        raise Refused(f"cross-origin request from {origin} refused")


def check_host(request: Request, bound: str) -> None:
    """`Refused` when a console without an API key is reached under a host name that is not
    this machine's: a page of another site whose name was re-pointed at this address (DNS
    rebinding) would otherwise be same-origin with the console, read its CSRF token and act.
    IP literals, ``localhost`` and the configured `bound` host are accepted."""
    name = urlsplit("//" + request.headers.get("host", "")).hostname or ""
    if name in ("localhost", bound.lower()) or name.endswith(".localhost") or _is_ip(name):
        return
    raise Refused(
        f"the console has no API key and answers only on this machine's addresses, not {name!r}"
        " (set http.api_key to reach it under another name)"
    )


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
