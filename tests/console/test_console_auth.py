"""The console's gate, over plain HTTP against the real host: the API key (header) or a login
session (cookie) for every page and fragment, the CSRF token on every state change made with
the cookie, no open redirect, assets served locally."""

from __future__ import annotations

import re
from urllib.parse import quote
from uuid import uuid4

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import ConsoleHost

PAGES = [
    "/",
    "/console/chat",
    "/console/agents",
    "/console/plugins",
    "/console/memories",
    "/console/timeline",
    "/console/metrics",
]


def _login(host: ConsoleHost) -> tuple[httpx.Client, str]:
    """A client holding a console session, and the session's CSRF token (from a page)."""
    client = httpx.Client(base_url=host.url, timeout=30)
    response = client.post("/login", data={"api_key": host.key, "next": "/console/agents"})
    assert response.status_code == 303 and response.headers["location"] == "/console/agents"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = client.get("/console/agents").text
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
    assert match is not None
    return client, match.group(1)


def test_every_page_and_fragment_needs_the_key(console_host: ConsoleHost) -> None:
    with httpx.Client(base_url=console_host.url, timeout=30) as anonymous:
        for path in PAGES:
            response = anonymous.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/login?next="), path
        fragment = anonymous.get("/console/fragments/metrics", headers={"HX-Request": "true"})
        assert fragment.status_code == 401 and fragment.headers["HX-Redirect"] == "/login"
        assert anonymous.get("/console/stream/whatever").status_code == 401
        with console_host.api() as api:
            agent = api.get("/agents/eliza").json()["id"]
        for method, path in (
            ("POST", "/console/chat/send"),
            ("GET", f"/console/agents/{agent}/saw/{uuid4()}"),
            ("POST", f"/console/agents/{agent}/stop"),
            ("POST", "/console/plugins/consoleprobe/reload"),
            ("DELETE", f"/console/agents/{agent}/memories/{uuid4()}"),
            ("DELETE", f"/console/agents/{agent}/rooms/{uuid4()}/memories"),
            ("POST", f"/console/agents/{agent}/rooms/{uuid4()}/replay"),
        ):
            response = anonymous.request(method, path, headers={"HX-Request": "true"})
            assert response.status_code == 401, (method, path)
        wrong = anonymous.get("/console/agents", headers={"X-API-Key": "nope"})
        assert wrong.status_code == 303
        bad_login = anonymous.post("/login", data={"api_key": "nope"})
        assert bad_login.status_code == 401 and "not the API key" in bad_login.text
        assert "set-cookie" not in bad_login.headers
        # the vendored assets are public (they hold no data) and local
        htmx = anonymous.get("/console/static/htmx.min.js")
        assert htmx.status_code == 200 and "htmx" in htmx.text[:2000]
        assert anonymous.get("/console/static/sse.min.js").status_code == 200
    with console_host.api() as api:
        for path in PAGES:
            page = api.get(path)
            assert page.status_code == 200, path
            policy = page.headers["content-security-policy"]
            assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
            sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
            assert all(s.startswith(("/", "#", "data:")) for s in sources), (path, sources)


def test_state_changes_with_the_cookie_need_the_csrf_token(console_host: ConsoleHost) -> None:
    client, token = _login(console_host)
    try:
        form = {"agent": "Eliza", "text": "hello"}
        headers = {"HX-Request": "true"}
        missing = client.post("/console/chat/send", data=form, headers=headers)
        assert missing.status_code == 403 and "CSRF" in missing.text
        wrong = client.post(
            "/console/chat/send", data=form, headers={**headers, "X-CSRF-Token": "x" + token}
        )
        assert wrong.status_code == 403
        elsewhere = client.post(
            "/console/chat/send",
            data=form,
            headers={**headers, "X-CSRF-Token": token, "Origin": "http://evil.example"},
        )
        assert elsewhere.status_code == 403 and "cross-origin" in elsewhere.text
        ok = client.post(
            "/console/chat/send",
            data=form,
            headers={**headers, "X-CSRF-Token": token, "Origin": console_host.url},
        )
        assert ok.status_code == 200 and "sse-connect" in ok.text
        # the cookie opens the console only, never the JSON API
        assert client.get("/agents").status_code == 401
        # logging out ends the session
        out = client.post("/logout", headers={"X-CSRF-Token": token})
        assert out.status_code == 303
        assert client.get("/console/agents").status_code == 303
    finally:
        client.close()


def test_the_key_header_needs_no_csrf_token(console_host: ConsoleHost) -> None:
    with console_host.api() as api:
        sent = api.post("/console/chat/send", data={"agent": "Eliza", "text": "hi"})
        assert sent.status_code == 200
        empty = api.post("/console/chat/send", data={"agent": "Eliza", "text": "  "})
        assert empty.status_code == 422 and "Type a message first." in empty.text
        nobody = api.post("/console/chat/send", data={"agent": "Nobody", "text": "hi"})
        assert nobody.status_code == 422 and "Pick a running agent." in nobody.text


def test_login_redirects_only_to_this_server(console_host: ConsoleHost) -> None:
    with httpx.Client(base_url=console_host.url, timeout=30) as client:
        for target in ("//evil.example/x", "https://evil.example/", "javascript:alert(1)"):
            response = client.post("/login", data={"api_key": console_host.key, "next": target})
            assert response.headers["location"] == "/", target


ROUTES = [
    ("GET", "/", ("agent", "room")),
    ("GET", "/console/chat", ("agent", "room")),
    ("GET", "/console/memories", ("agent", "room", "cursor", "q")),
    ("GET", "/console/timeline", ("agent", "room", "type", "after")),
    ("GET", "/console/agents/{}/saw/{}", ()),
    ("GET", "/console/stream/{}", ()),
    ("GET", "/login", ("next",)),
    ("POST", "/console/agents/{}/{}", ()),
    ("POST", "/console/plugins/{}/reload", ()),
    ("POST", "/console/agents/{}/rooms/{}/replay", ()),
    ("DELETE", "/console/agents/{}/memories/{}", ()),
    ("DELETE", "/console/agents/{}/rooms/{}/memories", ()),
    ("POST", "/console/chat/send", ()),
]
_segment = st.one_of(
    st.sampled_from(["Eliza", "eliza", "ada", "0", "-1", "..", "%00", str(uuid4())]),
    st.text(min_size=1, max_size=40),
)
_value = st.one_of(_segment, st.integers().map(str), st.just(""), st.text(max_size=300))


@given(
    route=st.sampled_from(ROUTES),
    segments=st.lists(_segment, min_size=2, max_size=2),
    query=st.dictionaries(
        st.sampled_from(["agent", "room", "cursor", "q", "type", "after", "next", "x"]),
        _value,
        max_size=4,
    ),
    body=st.binary(max_size=200),
)
@settings(max_examples=80, deadline=None)
def test_console_routes_never_answer_500_whatever_the_input(
    console_host: ConsoleHost,
    route: tuple[str, str, tuple[str, ...]],
    segments: list[str],
    query: dict[str, str],
    body: bytes,
) -> None:
    """Bounded fuzz over the console's routes (with the key): a 4xx or a page, never a 500 or
    a traceback. Segments are URL-quoted, so any text reaches the route as a path parameter."""
    method, template, _params = route
    if (
        method == "POST"
        and template == "/console/agents/{}/{}"
        and segments[1]
        in (
            "start",
            "stop",
        )
    ):
        segments[1] = "pause"  # the other tests' agents keep running
    path = template.format(*(quote(s, safe="") for s in segments))
    with console_host.api() as api:
        response = api.request(
            method,
            path,
            params=query,
            content=body,
            headers={"content-type": "application/x-www-form-urlencoded", "HX-Request": "true"},
        )
    assert response.status_code < 500, (method, path, query, response.text[:300])
    assert "Traceback" not in response.text
