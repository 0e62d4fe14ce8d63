"""`HttpServer`'s socket: connections it accepts send small writes at once (TCP_NODELAY), and
requests are parsed by httptools.

Without TCP_NODELAY a response written in two parts (headers, then body) waited for the
client's delayed ACK: ~40 ms per request on Linux (``GET /health`` took 48 ms,
bench/http_load.py). h11, uvicorn's pure-Python parser when httptools is missing, cost ~0.5 ms
of CPU a request more (bench/http_load.py: 0.21x -> 0.37x the in-process pipeline)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from host.http import HttpServer


@pytest.fixture
async def served() -> AsyncIterator[tuple[HttpServer, httpx.AsyncClient]]:
    """A one-route app (`GET /ping`) on a real server, and a client of it."""
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, int]:
        return {"ok": 1}

    server = HttpServer(app, port=0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            yield server, client
    finally:
        await server.stop()


async def test_accepted_connections_have_nodelay(
    served: tuple[HttpServer, httpx.AsyncClient],
) -> None:
    server, client = served
    assert (await client.get("/ping")).status_code == 200
    # the connection is kept alive: look at the server's end of it
    connections = list(server.server.server_state.connections)
    assert connections
    for connection in connections:
        sock = connection.transport.get_extra_info("socket")  # type: ignore[attr-defined]
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


async def test_requests_are_parsed_by_httptools(
    served: tuple[HttpServer, httpx.AsyncClient],
) -> None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    server, client = served
    assert (await client.get("/ping")).json() == {"ok": 1}
    connections = list(server.server.server_state.connections)
    assert connections and all(isinstance(c, HttpToolsProtocol) for c in connections)
