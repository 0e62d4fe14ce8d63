"""`HttpServer`'s socket: connections it accepts send small writes at once (TCP_NODELAY).

Without it a response written in two parts (headers, then body) waited for the client's delayed
ACK: ~40 ms per request on Linux (``GET /health`` took 48 ms, bench/http_load.py)."""

from __future__ import annotations

import socket

import httpx
from fastapi import FastAPI

from host.http import HttpServer


async def test_accepted_connections_have_nodelay() -> None:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, int]:
        return {"ok": 1}

    server = HttpServer(app, port=0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/ping")).status_code == 200
            # the connection is kept alive: look at the server's end of it
            connections = list(server.server.server_state.connections)
            assert connections
            for connection in connections:
                sock = connection.transport.get_extra_info("socket")  # type: ignore[attr-defined]
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        await server.stop()
