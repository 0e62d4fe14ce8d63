"""HTTP conventions on the real server: the API key as ``X-API-Key`` or ``Authorization:
Bearer``, a body that is not JSON is 400, no body gets a 500 or a traceback, the schema
documents 400/401/413/422 and the streamed route as ``text/event-stream``, and ``/docs`` loads
nothing from another host."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host.http_docs import ASSETS, NOT_HTTP

from .conftest import LiveHost


@pytest.fixture(scope="module")
def client(live_host: LiveHost) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_host.url, timeout=30) as http:
        yield http


def test_the_key_as_x_api_key_or_bearer(client: httpx.Client, live_host: LiveHost) -> None:
    assert client.get("/agents", headers={"X-API-Key": live_host.key}).status_code == 200
    bearer = client.get("/agents", headers={"Authorization": f"Bearer {live_host.key}"})
    assert bearer.status_code == 200 and bearer.json()[0]["name"] == "Eliza"
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {live_host.key}"},
        {"X-API-Key": "wrong"},
    ):
        refused = client.get("/agents", headers=headers)
        assert refused.status_code == 401, headers
        assert "Authorization: Bearer" in refused.json()["detail"]
        assert refused.headers["www-authenticate"] == "Bearer"
        assert live_host.key not in refused.text
    assert client.get("/health").status_code == 200


def test_a_body_that_is_not_json_is_400(client: httpx.Client, live_host: LiveHost) -> None:
    headers = {"X-API-Key": live_host.key, "content-type": "application/json"}
    for body in (b"{", b'{"text": "hi"', b"\xff\xfe"):
        response = client.post("/agents/eliza/messages", content=body, headers=headers)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["detail"].startswith("the body is not valid JSON")


JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = ("text", "user", "room_id", "entity_id", "metadata", "other")
BODIES = st.one_of(
    st.binary(max_size=300),
    st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6).map(
        lambda d: json.dumps(d).encode()
    ),
    JSON.map(lambda value: json.dumps(value).encode()),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(["/agents/eliza/messages", "/agents/eliza/messages/stream"]), body=BODIES
)
def test_no_body_gets_a_500_or_a_traceback(
    client: httpx.Client, live_host: LiveHost, path: str, body: bytes
) -> None:
    headers = {"X-API-Key": live_host.key, "content-type": "application/json"}
    response = client.post(path, content=body, headers=headers)
    assert response.status_code in (200, 400, 413, 422), (body, response.status_code, response.text)
    assert "Traceback" not in response.text
    if response.status_code != 200:
        assert "detail" in response.json()


def test_the_schema_documents_errors_and_the_stream(
    client: httpx.Client, live_host: LiveHost
) -> None:
    schema = client.get("/openapi.json", headers={"X-API-Key": live_host.key}).json()
    paths = schema["paths"]
    send = paths["/agents/{agent}/messages"]["post"]["responses"]
    assert {"200", "400", "401", "404", "413", "422"} <= set(send)
    stream = paths["/agents/{agent}/messages/stream"]["post"]["responses"]
    assert list(stream["200"]["content"]) == ["text/event-stream"]
    assert {"400", "401", "413", "422"} <= set(stream)
    assert "401" in paths["/agents"]["get"]["responses"]
    assert "401" not in paths["/health"]["get"]["responses"]
    assert "422" in paths["/agents/{agent}/rooms/{room_id}/memories"]["get"]["responses"]
    schemes = schema["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"apiKey", "http"}


def test_docs_load_nothing_from_another_host(client: httpx.Client, live_host: LiveHost) -> None:
    page = client.get("/docs", headers={"X-API-Key": live_host.key})
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", page.text)
    assert urls and all(u.startswith(("/docs/assets/", "/openapi.json")) for u in urls), urls
    assert "https://" not in page.text and "http://" not in page.text
    assert '"validatorUrl": null' in page.text
    for name, kind in (
        ("swagger-ui-bundle.js", "text/javascript"),
        ("swagger-ui.css", "text/css"),
        ("favicon-32x32.png", "image/png"),
    ):
        asset = client.get(f"/docs/assets/{name}")  # public: no key needed
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
        assert asset.content == (ASSETS / name).read_bytes()
    assert client.get("/docs/assets/README.md").status_code == 404
    assert client.get("/docs/assets/..%2F..%2Fhttp.py").status_code == 404


def test_a_request_that_is_not_valid_http_is_the_documented_plain_400(
    client: httpx.Client, live_host: LiveHost
) -> None:
    """httptools refuses a control character in a header or the request line before any route
    runs; every route documents that answer (schemathesis's negative examples send such
    requests, and an undocumented 400 failed its status check)."""
    address = urlsplit(live_host.url)
    for request in (
        b"GET /knowledge/search?q=a HTTP/1.1\r\nHost: x\r\nX-API-Key: a\x01b\r\n\r\n",
        b"GET /knowledge/search?q=a\x08b HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
            sock.sendall(request)
            answer = sock.recv(4096).decode("latin-1")
        head, _, body = answer.partition("\r\n\r\n")
        assert head.startswith("HTTP/1.1 400"), answer
        assert "content-type: text/plain" in head.lower() and body == NOT_HTTP
    schema = client.get("/openapi.json", headers={"X-API-Key": live_host.key}).json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            documented = operation["responses"]["400"]["content"]
            assert "text/plain" in documented, (method, path)
            if "requestBody" in operation:
                assert "application/json" in documented, (method, path)  # the body's 400
