"""A hostile look at the console, in process against a real host (SQLite, ELIZA, the audit
trail, an API key, a real HTTP server on 127.0.0.1): every route the app mounts is gated, every
state change wants the CSRF token and the same origin, sessions are never carried over, bad
input gets a 4xx page or fragment, stored markup (in attributes too) and secrets never reach a
page, and every console answer carries the security headers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from hypothesis import given, settings
from hypothesis import strategies as st
from loguru import logger
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount, NoMatchFound

from contracts.config import AgentsSettings, HostConfig, HttpSettings, PluginsSettings
from host.app import Host
from host.config import LoadedConfig
from host.console.inputs import local_target
from host.runtime import agent_id_for
from host.testing import offline_config

KEY = "hardening-key-0123456789"
EVIL = "\"'><img src=x onerror=alert(1)><script>alert(2)</script>"
CHARACTER = {
    "name": f"Eve{EVIL}",
    "username": f"eve{EVIL}",
    "bio": [f"bio {EVIL}"],
    "system": f"system {EVIL}",
    "adjectives": [EVIL],
    "topics": [EVIL],
    "style": {"all": [EVIL]},
    "secrets": {"EVE_TOKEN": "eve-secret-value-42"},
}
SHIPPED = Path(__file__).resolve().parents[2] / "config" / "characters"  # ELIZA
PUBLIC = {("GET", "/health"), ("GET", "/login"), ("GET", "/docs/assets/{name}")}
"""Routes open without the key: liveness, the login form itself, and the vendored Swagger UI
files (no data: the page that loads them, ``/docs``, wants the key)."""
PUBLIC_MOUNTS = {"/console/static"}
"""The vendored htmx and the console's CSS and JS: no data."""
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


async def _host(tmp_path: Path, *, api_key: str | None) -> Host:
    config = offline_config(
        tmp_path / "data",
        "audit",
        http=HttpSettings(port=0, api_key=SecretStr(api_key) if api_key else None),
        agents=AgentsSettings(characters_dir=SHIPPED, characters=[CHARACTER]),
    )
    host = Host(config)
    await host.start(http=True)
    return host


@pytest.fixture
async def keyed(tmp_path: Path) -> AsyncIterator[Host]:
    host = await _host(tmp_path, api_key=KEY)
    try:
        yield host
    finally:
        await host.stop()


def _routes(host: Host) -> list[tuple[str, str, Any]]:
    """(method, path template, endpoint) of every route the host's app mounts."""
    assert host.http is not None
    app = host.http.config.app
    found = []
    for route in iter_route_contexts(app.routes):
        if route.endpoint is None:  # a mount: only the console's public assets may be one
            assert route.path in PUBLIC_MOUNTS, f"unexpected mount {route.path}"
            continue
        for method in sorted(route.methods or {"GET"}):
            if method != "HEAD":
                found.append((method, str(route.path), route.endpoint))
    return found


def _fill(path: str) -> str:
    values = {"agent": "Eliza", "verb": "stop", "name": "eliza", "turn_id": "x"}
    if path.startswith("/docs/assets/"):
        values["name"] = "swagger-ui.css"
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values.get(m.group(1), str(uuid4())), path)


def _console(endpoint: Any) -> bool:
    return str(getattr(endpoint, "__module__", "")).startswith("host.console.")


async def _login(client: httpx.AsyncClient) -> str:
    """Log `client` in; the session's CSRF token."""
    response = await client.post("/login", data={"api_key": KEY, "next": "/console/agents"})
    assert response.status_code == 303
    page = await client.get("/console/agents")
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert token is not None
    return token.group(1)


async def test_every_mounted_route_is_gated_and_console_answers_carry_the_headers(
    keyed: Host,
) -> None:
    """Iterates the app's routes, so a route added later cannot slip past the key. The console
    installs its routes at its first request (host/console/mount.py): that request is answered
    like any later one, gated and with the headers."""
    assert keyed.http is not None
    async with httpx.AsyncClient(base_url=keyed.http.url, timeout=30) as anonymous:
        first = await anonymous.get("/console/agents")
        assert first.status_code == 303, first.text[:200]
        assert first.headers["location"] == "/login?next=%2Fconsole%2Fagents"
        assert "frame-ancestors 'none'" in first.headers["content-security-policy"]
        routes = _routes(keyed)
        console = [r for r in routes if _console(r[2])]
        assert len(console) >= 19  # the iteration sees the console's routes
        for method, template, endpoint in routes:
            path = _fill(template)
            for headers in ({}, {"HX-Request": "true"}, {"X-API-Key": "wrong"}):
                response = await anonymous.request(method, path, headers=headers)
                where = (method, template, headers)
                if (method, template) in PUBLIC:
                    assert response.status_code == 200, where
                elif response.status_code == 303:
                    assert response.headers["location"].startswith("/login?next="), where
                    assert method == "GET" and not headers.get("HX-Request"), where
                else:
                    assert response.status_code == 401, (where, response.text[:200])
                if _console(endpoint):
                    assert "frame-ancestors 'none'" in response.headers.get(
                        "content-security-policy", ""
                    ), where
                    assert response.headers["x-content-type-options"] == "nosniff", where
        # the assets and a refusal carry the headers too; a room id cannot inject a header
        asset = await anonymous.get("/console/static/htmx.min.js")
        assert asset.status_code == 200 and "content-security-policy" in asset.headers
        injected = await anonymous.get("/console/chat?room=%0d%0aX-Injected:%20yes")
        assert injected.status_code == 303 and "x-injected" not in injected.headers
        assert "\n" not in injected.headers["location"] and "\r" not in injected.headers["location"]
        assert KEY not in (await anonymous.get("/login")).text


async def test_concurrent_first_requests_install_the_console_once(keyed: Host) -> None:
    """Requests that reach the console before it is installed (host/console/mount.py) are all
    answered as usual, and its routes are installed once, where the console stood."""
    assert keyed.http is not None
    app = keyed.http.config.app
    before = [type(r).__name__ for r in app.routes]
    assert before[-1] == "_Pending" and getattr(app.state, "console", None) is None
    paths = ["/console/agents", "/", "/login", "/console/static/htmx.min.js", "/console/nope"]
    async with httpx.AsyncClient(base_url=keyed.http.url, timeout=30) as client:
        answers = await asyncio.gather(*(client.get(p) for p in paths * 3))
    codes = [a.status_code for a in answers[: len(paths)]]
    assert codes == [303, 303, 200, 200, 404]
    assert [a.status_code for a in answers] == codes * 3
    assert all("content-security-policy" in a.headers for a in answers)
    from host.console.routes import ROUTERS

    kinds = [type(r).__name__ for r in app.routes]
    assert "_Pending" not in kinds
    # once: the routes before the console, then its static files and one entry per router
    assert kinds[: len(before) - 1] == before[:-1]
    assert len(kinds) == len(before) - 1 + 1 + len(ROUTERS), "the console installed twice"


async def test_under_a_prefix_answers_carry_the_headers_and_log_in_there(keyed: Host) -> None:
    """A parent app mounting the host's app at ``/ah`` (its routes see a ``root_path``): the
    console's answers still carry the security headers, and a page sends the browser to the
    login form under ``/ah``, back to the page after; the API's answers stay without them."""
    assert keyed.http is not None
    parent = Starlette(routes=[Mount("/ah", app=keyed.http.config.app)])
    transport = httpx.ASGITransport(app=parent)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        page = await client.get("/ah/console/agents?room=r1")
        assert page.status_code == 303
        assert page.headers["location"] == "/ah/login?next=%2Fah%2Fconsole%2Fagents%3Froom%3Dr1"
        fragment = await client.get("/ah/console/agents", headers={"HX-Request": "true"})
        assert fragment.status_code == 401 and fragment.headers["hx-redirect"] == "/ah/login"
        for answer in (page, fragment, await client.get("/ah/login")):
            assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
            assert answer.headers["x-frame-options"] == "DENY"
        asset = await client.get("/ah/console/static/htmx.min.js")
        assert asset.status_code == 200 and asset.headers["x-frame-options"] == "DENY"
        health = await client.get("/ah/health")
        assert health.status_code == 200 and "x-frame-options" not in health.headers


class _Urls(HTMLParser):
    """Every URL a page's links, forms, assets and htmx attributes lead to."""

    ATTRIBUTES = frozenset(
        {"href", "src", "action", "hx-get", "hx-post", "hx-delete", "sse-connect"}
    )

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [(name, v) for name, v in attrs if name in self.ATTRIBUTES and v]


async def test_under_a_prefix_every_link_form_and_redirect_stays_under_it(keyed: Host) -> None:
    """Served at ``/ah`` by a parent app, the console's pages lead only to ``/ah/...``: every
    link, form, asset, htmx request and stream of every page (a chat turn's too), the log-in's
    default landing and the log-out's redirects; and each page link found answers 200."""
    assert keyed.http is not None
    parent = Starlette(routes=[Mount("/ah", app=keyed.http.config.app)])
    transport = httpx.ASGITransport(app=parent)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        form = await client.get("/ah/login")
        assert 'name="next" value="/ah/"' in form.text
        landed = await client.post("/ah/login", data={"api_key": KEY})
        assert landed.status_code == 303 and landed.headers["location"] == "/ah/"
        pages = ["/ah/", *(f"/ah/console/{p}" for p in ("agents", "plugins", "memories"))]
        pages += ["/ah/console/timeline", "/ah/console/metrics"]
        page = await client.get("/ah/console/agents")
        token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
        assert token is not None
        turn = await client.post(
            "/ah/console/chat/send",
            data={"agent": "Eliza", "room": "", "text": "hello there"},
            headers={"X-CSRF-Token": token.group(1), "Origin": "http://127.0.0.1"},
        )
        assert turn.status_code == 200, turn.text[:300]
        seen: list[tuple[str, str]] = []
        for path in pages:
            answer = await client.get(path)
            assert answer.status_code == 200, (path, answer.text[:200])
            parser = _Urls()
            parser.feed(answer.text)
            seen += parser.urls
        parser = _Urls()
        parser.feed(turn.text)
        (stream,) = [url for name, url in parser.urls if name == "sse-connect"]
        events = await client.get(stream)  # the reply's fragment arrives as an event
        assert events.status_code == 200 and "event: reply" in events.text, events.text[:300]
        parser.feed(events.text.split("event: reply", 1)[1].replace("\ndata: ", "\n"))
        assert any(name == "hx-get" and "/saw/" in url for name, url in parser.urls)
        seen += parser.urls
        absolute = [(name, url) for name, url in seen if url.startswith("/")]
        assert {name for name, _ in absolute} >= {"href", "src", "action", "hx-get", "sse-connect"}
        outside = [(name, url) for name, url in absolute if not url.startswith("/ah/")]
        assert not outside, outside
        for name, url in absolute:
            if name == "href" and not url.startswith("/ah/console/static/"):
                assert (await client.get(url)).status_code == 200, url
        out = await client.post(
            "/ah/logout",
            headers={"X-CSRF-Token": token.group(1), "Origin": "http://127.0.0.1"},
        )
        assert out.status_code == 303 and out.headers["location"] == "/ah/login"


async def test_a_failed_install_answers_503_keeps_the_routes_and_is_tried_again(
    keyed: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installing the console at its first request fails (its static directory is missing,
    after its state was made): that request is a 503 saying so and the log names the cause,
    the routes and ``app.state`` are as before (no 404s after, nothing left subscribed), and
    the next request installs it."""
    from host.console import routes

    assert keyed.http is not None
    app = keyed.http.config.app
    before = list(app.routes)
    subscribed = len(keyed.events.subscriptions())
    monkeypatch.setattr(routes, "_HERE", tmp_path / "gone")  # StaticFiles: no such directory
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="ERROR")
    try:
        async with httpx.AsyncClient(base_url=keyed.http.url, timeout=30) as client:
            for _ in range(2):
                failed = await client.get("/console/agents")
                assert failed.status_code == 503, failed.text[:200]
                assert "could not be installed" in failed.json()["detail"]
                assert "frame-ancestors 'none'" in failed.headers["content-security-policy"]
                assert app.routes == before and not hasattr(app.state, "console")
                assert len(keyed.events.subscriptions()) == subscribed
            assert any("could not be installed" in line and "gone" in line for line in lines)
            monkeypatch.undo()
            page = await client.get("/console/agents")
            assert page.status_code == 303 and page.headers["location"].startswith("/login?")
            assert (await client.get("/login")).status_code == 200
    finally:
        logger.remove(sink)
    assert "_Pending" not in [type(r).__name__ for r in app.routes]
    assert hasattr(app.state, "console")


async def test_url_for_reaches_past_the_console_before_it_is_installed(keyed: Host) -> None:
    """The route standing for the console has no name: ``url_for`` goes on to a route added
    after it, and an unknown name is `NoMatchFound`, not a 500 from NotImplementedError."""
    assert keyed.http is not None
    app = keyed.http.config.app

    async def later(request: Request) -> dict[str, str]:
        return {"url": str(request.url_for("later", n="7"))}

    app.add_api_route("/later/{n}", later, name="later")
    assert type(app.routes[-2]).__name__ == "_Pending"  # the new route comes after it
    with pytest.raises(NoMatchFound):
        app.url_path_for("no-such-route")
    async with httpx.AsyncClient(base_url=keyed.http.url, timeout=30) as client:
        found = await client.get("/later/7", headers={"X-API-Key": KEY})
    assert found.status_code == 200 and found.json()["url"].endswith("/later/7"), found.text


async def test_every_state_change_needs_the_token_and_the_same_origin(keyed: Host) -> None:
    assert keyed.http is not None
    url = keyed.http.url
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        token = await _login(client)  # the first console request installs its routes
        routes = _routes(keyed)
        changing = [(m, _fill(p)) for m, p, e in routes if _console(e) and m in STATE_CHANGING]
        assert {p for _, p in changing} >= {"/console/chat/send", "/logout", "/login"}
        for method, path in changing:
            if path == "/login":
                continue
            for headers in (
                {},
                {"X-CSRF-Token": ""},
                {"X-CSRF-Token": token + "x"},
                {"X-CSRF-Token": token, "Origin": "http://evil.example"},
                {"X-CSRF-Token": token, "Origin": "null"},
                {"X-CSRF-Token": token, "Origin": url.replace("127.0.0.1", "localhost")},
                {"X-CSRF-Token": token, "Sec-Fetch-Site": "cross-site"},
                {"X-CSRF-Token": token, "Sec-Fetch-Site": "same-site"},
            ):
                response = await client.request(
                    method, path, headers={"HX-Request": "true", **headers}
                )
                assert response.status_code == 403, (method, path, headers, response.text)
        # htmx gets the reason as an escaped fragment (it swaps 4xx answers into the page)
        markup = await client.post(
            "/console/chat/send",
            headers={"HX-Request": "true", "X-CSRF-Token": token, "Origin": "http://<b>x</b>"},
        )
        assert markup.status_code == 403 and markup.headers["content-type"].startswith("text/html")
        assert 'role="alert"' in markup.text and "&lt;b&gt;x&lt;/b&gt;" in markup.text
        assert "<b>" not in markup.text
        # the token from the same origin passes (no Origin header, as from a script: allowed)
        ok = await client.post(
            "/console/chat/send",
            data={"agent": "Eliza", "text": "hi"},
            headers={"X-CSRF-Token": token, "Sec-Fetch-Site": "same-origin", "Origin": url},
        )
        assert ok.status_code == 200
        # logging in from another site is refused before the key is even looked at
        for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            forged = await client.post("/login", data={"api_key": KEY}, headers=headers)
            assert forged.status_code == 403, headers


async def test_a_login_never_keeps_the_session_the_browser_came_with(keyed: Host) -> None:
    assert keyed.http is not None
    async with httpx.AsyncClient(base_url=keyed.http.url, timeout=30) as client:
        await _login(client)
        first = client.cookies["agenthost_console"]
        await _login(client)  # the browser still sends the first cookie
        second = client.cookies["agenthost_console"]
        assert second != first
    async with httpx.AsyncClient(base_url=keyed.http.url, timeout=30) as replay:
        replay.cookies.set("agenthost_console", first)
        assert (await replay.get("/console/agents")).status_code == 303  # dropped
        replay.cookies.set("agenthost_console", second)
        assert (await replay.get("/console/agents")).status_code == 200
        token = re.search(r'name="csrf-token" content="([^"]+)"', (await replay.get("/")).text)
        assert token is not None
        assert (
            await replay.post("/logout", headers={"X-CSRF-Token": token.group(1)})
        ).status_code == 303
        assert (await replay.get("/console/agents")).status_code == 303  # logged out


@pytest.mark.parametrize(
    "target",
    ["/\\evil.example", "/\\/evil.example", "/\t/evil.example", "/\n/evil.example", "/\x7f"],
)
def test_login_redirect_refuses_what_browsers_read_as_another_host(target: str) -> None:
    assert local_target(target) == "/"


@given(st.text(max_size=60))
@settings(max_examples=300, deadline=None)
def test_a_login_redirect_stays_here_as_a_browser_reads_it(target: str) -> None:
    local = local_target(target)
    read = re.sub(r"[\t\n\r]", "", local).replace("\\", "/")  # what a browser resolves
    assert urlsplit(read).netloc == "" and urlsplit(read).scheme == ""
    assert read.startswith("/") and not read.startswith("//")


PICKER_PAGES = ("/console/memories", "/console/timeline")
"""Pages showing one agent's room, picked by ``?agent=&room=``."""


async def test_bad_input_gets_a_4xx_page_or_fragment_never_a_500(keyed: Host) -> None:
    assert keyed.agents is not None and keyed.http is not None
    runtime = keyed.agents.get("Eliza")
    room = (
        await runtime.process_message(runtime.new_message("hi", room_id=uuid4(), entity_id=uuid4()))
    ).room_id
    nobody = uuid4()
    cases = [
        *[
            ("GET", f"/console/timeline?agent=Eliza&room={room}&after={after}", 200)
            for after in ("99999999999999999999999", "9223372036854775808", "-3", "%C2%B2", "abc")
        ],
        ("GET", f"/console/memories?agent=Eliza&room={room}&cursor=%ff%fe", 200),
        ("GET", "/console/memories?agent=%ff&room=%00", 404),
        *[(("GET", f"{page}?agent=Nobody", 404)) for page in ("/", *PICKER_PAGES)],
        *[(("GET", f"{page}?agent=Eliza&room=not-a-uuid", 422)) for page in PICKER_PAGES],
        ("GET", "/console/agents/Eliza/saw/not-a-uuid", 404),
        ("GET", f"/console/agents/Nobody/saw/{nobody}", 404),
        ("DELETE", "/console/agents/Eliza/memories/garbage", 404),
        ("DELETE", "/console/agents/Eliza/rooms/garbage/memories", 404),
        ("POST", f"/console/agents/Nobody/rooms/{room}/replay", 404),
        ("POST", "/console/agents/Eliza/rooms/garbage/replay", 404),
        ("POST", "/console/agents/Nobody/start", 404),
        ("POST", "/console/agents/Eliza/explode", 404),
    ]
    headers = {"X-API-Key": KEY}
    async with httpx.AsyncClient(base_url=keyed.http.url, timeout=30, headers=headers) as api:
        for method, path, status in cases:
            response = await api.request(method, path)
            assert response.status_code == status, (method, path, response.text[:300])
            assert response.headers["content-type"].startswith("text/html"), (method, path)
            assert "Traceback" not in response.text
            if "agent=Nobody" in path:  # not another agent's conversation instead
                assert "No running agent &#39;Nobody&#39; (running: Eliza" in response.text
            if "room=not-a-uuid" in path:
                assert "is not a room id" in response.text
            if "after=" in path:  # the first page, and why
                assert "That page link is broken" in response.text, path
                assert "message:received" in response.text, path
        empty = await api.post("/console/chat/send", data={"agent": "Eliza", "text": " \n "})
        assert empty.status_code == 422 and "Type a message first." in empty.text
        raw = await api.post(
            "/console/chat/send",
            content=b"agent=Eliza&text=caf\xe9\xff",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert raw.status_code == 200 and "caf" in raw.text


class _Elements(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


async def test_markup_in_names_and_stored_data_stays_text_in_attributes_too(keyed: Host) -> None:
    """A character named with quotes and tags, a sender and a memory holding markup: no page
    gains an element or an attribute from them, and the secrets are nowhere."""
    assert keyed.agents is not None and keyed.http is not None
    eve = keyed.agents.get(agent_id_for(CHARACTER["name"]))
    room = uuid4()
    message = eve.new_message(f"memory {EVIL}", room_id=room, entity_id=uuid4(), name=EVIL)
    reply = await eve.process_message(message)
    agent_ref = str(eve.agent_id)
    async with httpx.AsyncClient(
        base_url=keyed.http.url, timeout=30, headers={"X-API-Key": KEY}
    ) as api:
        stopped = await api.post(f"/console/agents/{agent_ref}/stop")
        started = await api.post(f"/console/agents/{agent_ref}/start")
        assert stopped.status_code == started.status_code == 200
        eve = keyed.agents.get(agent_ref)
        pages = [
            "/console/agents",
            f"/?agent={eve.agent_id}&room={room}",
            f"/console/memories?agent={eve.agent_id}&room={room}",
            f"/console/memories?agent={eve.agent_id}&room={room}&q=memory",
            f"/console/timeline?agent={eve.agent_id}&room={room}",
            f"/console/agents/{agent_ref}/saw/{reply.message_id}",
            "/console/plugins",
        ]
        bodies = {path: (await api.get(path)).text for path in pages}
        bodies["start"] = started.text
    for path, body in bodies.items():
        assert "eve-secret-value-42" not in body and KEY not in body, path
        parsed = _Elements()
        parsed.feed(body)
        scripts = [a.get("src") for t, a in parsed.tags if t == "script"]
        assert all(s and s.startswith("/console/static/") for s in scripts), (path, scripts)
        assert not [t for t, _ in parsed.tags if t == "img"], path
        for tag, attrs in parsed.tags:
            assert not [a for a in attrs if a.startswith("on")], (path, tag, attrs)
            for name in ("hx-get", "hx-post", "hx-delete", "href", "action"):
                target = attrs.get(name)
                if target is not None:
                    assert "<" not in target and '"' not in target, (path, tag, attrs)
        assert EVIL in "".join(parsed.text) or path == "/console/plugins", path


async def test_an_open_console_answers_only_under_this_machines_names(tmp_path: Path) -> None:
    """Without an API key, a page of another site whose name was re-pointed at 127.0.0.1 (DNS
    rebinding) is same-origin with the console: it must not get a session, a token or a page."""
    host = await _host(tmp_path, api_key=None)
    try:
        assert host.http is not None
        async with httpx.AsyncClient(base_url=host.http.url, timeout=30) as client:
            port = host.http.port
            for name in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
                page = await client.get("/console/agents", headers={"Host": name})
                assert page.status_code == 200, name
            for name in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}"):
                page = await client.get("/console/agents", headers={"Host": name})
                assert page.status_code == 403 and "http.api_key" in page.text, name
                assert "set-cookie" not in page.headers and "csrf-token" not in page.text
                login = await client.post("/login", data={}, headers={"Host": name})
                assert login.status_code == 403 and "set-cookie" not in login.headers
    finally:
        await host.stop()


async def test_a_failure_shown_on_a_page_masks_the_configured_secrets(
    keyed: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error quoting a secret (a DSN with its password, a key) is masked on the page as in
    the logs: the page is outside the log scrubbing."""
    from host.console import timeline

    async def failing(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(f"cannot reach postgresql://agent:{KEY}@db/events")

    monkeypatch.setattr(timeline, "replay_room", failing)  # the store failing mid-replay
    assert keyed.http is not None
    headers = {"X-API-Key": KEY}
    async with httpx.AsyncClient(base_url=keyed.http.url, timeout=30, headers=headers) as api:
        page = await api.post(f"/console/agents/Eliza/rooms/{uuid4()}/replay")
    assert "The replay failed: cannot reach postgresql://agent:" in page.text
    assert KEY not in page.text


async def test_search_without_an_embedding_model_says_so_and_lists(tmp_path: Path) -> None:
    config = HostConfig(
        data_dir=tmp_path / "data",
        http=HttpSettings(port=0),
        agents=AgentsSettings(characters_dir=SHIPPED),
        plugins=PluginsSettings(enabled=["sqlite"]),  # no model plugin at all
    )
    host = Host(LoadedConfig(config, None))
    await host.start(http=True)
    try:
        assert host.agents is not None and host.http is not None
        runtime = host.agents.get("Eliza")
        room = uuid4()
        await runtime.database.create_memory(
            runtime.new_message("a stored note", room_id=room, entity_id=uuid4())
        )
        async with httpx.AsyncClient(base_url=host.http.url, timeout=30) as client:
            page = await client.get(f"/console/memories?agent=Eliza&room={room}&q=note")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "The search needs the agent&#39;s embedding model" in page.text
        assert "a stored note" in page.text  # the room's memories instead
    finally:
        await host.stop()


async def test_a_failing_start_or_an_empty_replay_says_why(
    keyed: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert keyed.agents is not None and keyed.http is not None

    async def failing(_ref: Any) -> Any:
        raise RuntimeError(f"no database bound (dsn postgresql://a:{KEY}@db)")

    monkeypatch.setattr(keyed.agents, "start", failing)
    headers = {"X-API-Key": KEY}
    async with httpx.AsyncClient(base_url=keyed.http.url, timeout=30, headers=headers) as api:
        start = await api.post("/console/agents/Eliza/start")
        assert start.status_code == 409 and "Could not start Eliza: no database bound" in start.text
        assert KEY not in start.text
        empty = await api.post(f"/console/agents/Eliza/rooms/{uuid4()}/replay")
        assert empty.status_code == 200 and "Nothing to replay" in empty.text
        assert "matches the recording" not in empty.text
