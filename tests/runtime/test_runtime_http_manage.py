"""The management routes (host.http_manage) through a real uvicorn server: start / stop agents,
an agent's rooms, deleting memories; their OpenAPI entries; the API key guarding them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import httpx
import pytest

from contracts.events import MEMORY_DELETED
from host.http import API_KEY_HEADER, HttpServer, create_app

from .runtime_helpers import Rig

KEY = "manage-key"


@pytest.fixture
async def client(rig: Rig) -> AsyncIterator[httpx.AsyncClient]:
    srv = HttpServer(create_app(rig.agents, api_key=KEY), port=0)
    await srv.start()
    try:
        headers = {API_KEY_HEADER: KEY}
        async with httpx.AsyncClient(base_url=srv.url, timeout=10, headers=headers) as http:
            yield http
    finally:
        await srv.stop()


async def _talk(client: httpx.AsyncClient, room: str, *texts: str) -> None:
    for text in texts:
        response = await client.post("/agents/eliza/messages", json={"text": text, "room_id": room})
        assert response.status_code == 200, response.text


async def test_stop_and_start_agent(client: httpx.AsyncClient, rig: Rig) -> None:
    stopped = await client.post("/agents/eliza/stop")
    assert stopped.status_code == 200 and stopped.json() == {"name": "Eliza", "running": False}
    assert rig.agents.find("Eliza") is None
    refused = await client.post("/agents/eliza/messages", json={"text": "hello"})
    assert refused.status_code == 404 and "not running" in refused.json()["detail"]
    again = await client.post("/agents/eliza/stop")  # stopping a stopped agent is no error
    assert again.json()["running"] is False
    started = await client.post(f"/agents/{rig.agents.characters[0].name}/start")
    assert started.json() == {"name": "Eliza", "running": True}
    assert rig.agents.find("Eliza") is not None
    assert (await client.post("/agents/eliza/messages", json={"text": "hi"})).status_code == 200
    unknown = await client.post("/agents/nobody/start")
    assert unknown.status_code == 404 and "nobody" in unknown.json()["detail"]


async def test_rooms_listed_newest_first(client: httpx.AsyncClient) -> None:
    first, second = str(uuid4()), str(uuid4())
    await _talk(client, first, "I feel sad", "I feel happy")
    await _talk(client, second, "my mother")
    rooms = (await client.get("/agents/eliza/rooms")).json()
    assert [r["room_id"] for r in rooms] == [second, first]
    assert [r["memories"] for r in rooms] == [2, 4]  # message + reply each


async def test_delete_one_memory_and_a_room(client: httpx.AsyncClient, rig: Rig) -> None:
    room, other = str(uuid4()), str(uuid4())
    await _talk(client, room, "one", "two")
    await _talk(client, other, "keep me")
    page = (await client.get(f"/agents/eliza/rooms/{room}/memories")).json()
    victim = page["items"][0]["id"]
    gone = await client.delete(f"/agents/eliza/memories/{victim}")
    assert gone.status_code == 200 and gone.json() == {"deleted": 1}
    assert (await client.delete(f"/agents/eliza/memories/{victim}")).status_code == 404
    left = (await client.get(f"/agents/eliza/rooms/{room}/memories")).json()["items"]
    assert victim not in [m["id"] for m in left] and len(left) == 3
    deleted_events = [p.memory_id for p in rig.payloads(MEMORY_DELETED.name)]
    assert str(deleted_events[0]) == victim

    emptied = await client.delete(f"/agents/eliza/rooms/{room}/memories")
    assert emptied.json() == {"deleted": 3}
    assert (await client.get(f"/agents/eliza/rooms/{room}/memories")).json()["items"] == []
    assert len(rig.payloads(MEMORY_DELETED.name)) == 4
    kept = (await client.get(f"/agents/eliza/rooms/{other}/memories")).json()["items"]
    assert len(kept) == 2
    assert (await client.delete(f"/agents/eliza/rooms/{room}/memories")).json() == {"deleted": 0}
    bad = await client.delete("/agents/eliza/memories/not-a-uuid")
    assert bad.status_code == 422


async def test_routes_need_the_key_and_are_in_the_schema(client: httpx.AsyncClient) -> None:
    anonymous = httpx.AsyncClient(base_url=str(client.base_url), timeout=10)
    async with anonymous:
        for method, path in (
            ("POST", "/agents/eliza/stop"),
            ("POST", "/agents/eliza/start"),
            ("GET", "/agents/eliza/rooms"),
            ("DELETE", f"/agents/eliza/memories/{uuid4()}"),
            ("DELETE", f"/agents/eliza/rooms/{uuid4()}/memories"),
        ):
            response = await anonymous.request(method, path)
            assert response.status_code == 401, (method, path)
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "post" in paths["/agents/{agent}/start"] and "post" in paths["/agents/{agent}/stop"]
    assert "get" in paths["/agents/{agent}/rooms"]
    assert "delete" in paths["/agents/{agent}/memories/{memory_id}"]
    assert "delete" in paths["/agents/{agent}/rooms/{room_id}/memories"]
    rooms = paths["/agents/{agent}/rooms"]["get"]["responses"]["200"]
    assert rooms["content"]["application/json"]["schema"]["items"]["$ref"].endswith("RoomOut")
