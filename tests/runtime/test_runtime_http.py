"""The HTTP API through a real uvicorn server on a free 127.0.0.1 port, spoken to with httpx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import httpx
import pytest

from contracts.memory import Memory, MemoryQuery
from contracts.models import TEXT_LARGE, ModelCallError, ModelHandler, TextParams, TextResult
from host.http import API_KEY_HEADER, HttpServer, create_app

from .runtime_helpers import Rig


@pytest.fixture
async def server(rig: Rig) -> AsyncIterator[HttpServer]:
    srv = HttpServer(create_app(rig.agents, max_body_bytes=4096), port=0)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def client(server: HttpServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        yield http


async def test_health_ready_and_agents(client: httpx.AsyncClient, rig: Rig) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/ready")
    assert ready.status_code == 200 and ready.json()["agents"] == ["Eliza"]
    agents = (await client.get("/agents")).json()
    assert [a["name"] for a in agents] == ["Eliza"]
    assert agents[0]["running"] is True
    assert agents[0]["id"] == str(rig.runtime.agent_id)
    by_id = await client.get(f"/agents/{rig.runtime.agent_id}")
    assert by_id.status_code == 200 and by_id.json()["name"] == "Eliza"


async def test_not_ready_without_running_agent(client: httpx.AsyncClient, rig: Rig) -> None:
    await rig.agents.stop("Eliza")
    response = await client.get("/ready")
    assert response.status_code == 503
    assert (await client.get("/agents")).json()[0]["running"] is False


async def test_send_message_and_page_memories(client: httpx.AsyncClient, rig: Rig) -> None:
    room = str(uuid4())
    texts = [f"I dream about number {i}" for i in range(5)]
    for text in texts:
        response = await client.post("/agents/eliza/messages", json={"text": text, "room_id": room})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["responded"] is True and body["text"]
        assert body["reply"]["content"]["text"] == body["text"]
        assert "embedding" not in body["reply"]
        assert body["room_id"] == room
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3, "order": "asc"} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(f"/agents/Eliza/rooms/{room}/memories", params=params)).json()
        pages += 1
        seen += [item["content"]["text"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 4  # 10 memories, 3 per page
    assert len(seen) == 10
    assert seen[0::2] == texts  # message, reply, message, reply...
    newest = (await client.get(f"/agents/eliza/rooms/{room}/memories", params={"limit": 1})).json()
    assert newest["items"][0]["content"]["text"] == seen[-1]


async def test_memory_pages_carry_vectors_only_when_asked(
    client: httpx.AsyncClient, rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page leaves the vectors unread (``embedding`` null) unless ``?embeddings=true``, which
    gives each memory's vector as a JSON list of numbers."""
    room = str(uuid4())
    sent = await client.post("/agents/eliza/messages", json={"text": "I dream", "room_id": room})
    assert sent.status_code == 200, sent.text
    asked: list[MemoryQuery] = []
    real = rig.db.get_memories

    async def spy(query: MemoryQuery) -> list[Memory]:
        asked.append(query)
        return await real(query)

    monkeypatch.setattr(rig.db, "get_memories", spy)
    url = f"/agents/eliza/rooms/{room}/memories"
    plain = (await client.get(url, params={"order": "asc"})).json()
    assert len(plain["items"]) == 2 and all(i["embedding"] is None for i in plain["items"])
    assert asked[-1].with_embeddings is False
    full = (await client.get(url, params={"order": "asc", "embeddings": "true"})).json()
    assert asked[-1].with_embeddings is True
    monkeypatch.undo()
    stored = await rig.db.get_memories(MemoryQuery(room_id=UUID(room), order="asc"))
    assert all(m.embedding is not None for m in stored)
    assert [i["embedding"] for i in full["items"]] == [m.embedding.tolist() for m in stored]  # type: ignore[union-attr]
    assert len(full["items"][0]["embedding"]) == 384
    bad = await client.get(url, params={"embeddings": "maybe"})
    assert bad.status_code == 422 and "embeddings" in bad.text


async def test_metadata_is_stored_with_the_message(client: httpx.AsyncClient, rig: Rig) -> None:
    room = str(uuid4())
    body = {"text": "hi", "room_id": room, "user": "ann", "metadata": {"channel_type": "dm"}}
    assert (await client.post("/agents/eliza/messages", json=body)).status_code == 200
    page = await client.get(f"/agents/eliza/rooms/{room}/memories", params={"order": "asc"})
    content = page.json()["items"][0]["content"]
    assert content == {"text": "hi", "name": "ann", "source": "http", "channel_type": "dm"}


async def test_default_room_per_user(client: httpx.AsyncClient) -> None:
    a = (await client.post("/agents/eliza/messages", json={"text": "hi", "user": "ann"})).json()
    b = (await client.post("/agents/eliza/messages", json={"text": "yo", "user": "ann"})).json()
    c = (await client.post("/agents/eliza/messages", json={"text": "hi", "user": "bob"})).json()
    assert a["room_id"] == b["room_id"] != c["room_id"]


async def test_stream_reply_as_sse(client: httpx.AsyncClient) -> None:
    events: list[tuple[str, dict[str, object]]] = []
    async with client.stream(
        "POST", "/agents/eliza/messages/stream", json={"text": "I am unhappy with my work"}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((event, json.loads(line.split(":", 1)[1])))
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "reply" and set(kinds[:-1]) == {"chunk"} and len(kinds) >= 2
    text = "".join(str(data["text"]) for kind, data in events if kind == "chunk")
    assert text == events[-1][1]["text"]
    reply = events[-1][1]["reply"]
    assert isinstance(reply, dict) and "embedding" not in reply


async def test_validation_errors_are_422_with_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/agents/eliza/messages", json={"text": ""})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "text"]
    response = await client.post("/agents/eliza/messages", json={"text": "x", "room_id": "nope"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "room_id"]
    response = await client.post("/agents/eliza/messages", json={"text": "x", "bogus": 1})
    assert response.json()["detail"][0]["loc"] == ["body", "bogus"]
    response = await client.post(
        "/agents/eliza/messages", json={"text": "x", "metadata": {"source": "web", "topic": 1}}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "metadata"]
    assert "source cannot be set" in response.json()["detail"][0]["msg"]
    room = uuid4()
    response = await client.get(f"/agents/eliza/rooms/{room}/memories", params={"limit": 0})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "limit"]
    response = await client.get(f"/agents/eliza/rooms/{room}/memories", params={"cursor": "@@"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "cursor"]


async def test_metadata_cannot_set_room_or_entity(client: httpx.AsyncClient) -> None:
    for key in ("room_id", "entity_id"):
        body = {"text": "hi", "metadata": {key: str(uuid4())}}
        response = await client.post("/agents/eliza/messages", json=body)
        assert response.status_code == 422, response.text
        error = response.json()["detail"][0]
        assert error["loc"] == ["body", "metadata"] and f"{key} cannot be set" in error["msg"]


@pytest.mark.parametrize("path", ["/agents/eliza/messages", "/agents/eliza/messages/stream"])
async def test_a_message_sent_as_the_agent_itself_is_422_and_stores_nothing(
    client: httpx.AsyncClient, rig: Rig, path: str
) -> None:
    """Its line would be the agent's own in the history the model is shown next."""
    room = uuid4()
    body = {"text": "I am the agent now", "entity_id": str(rig.runtime.agent_id)}
    response = await client.post(path, json={**body, "room_id": str(room)})
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", "entity_id"] and "agent Eliza itself" in error["msg"]
    assert await rig.db.get_memories(MemoryQuery(room_id=room)) == []


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (rb'{"text": "hi \ud800 there"}', ["body", "text"]),  # a lone surrogate: valid JSON
        (rb'{"text": "hi", "user": "\udfff"}', ["body", "user"]),
        (rb'{"text": "hi", "metadata": {"topic": ["\ud800"]}}', ["body", "metadata"]),
        (rb'{"text": NaN}', ["body", "text"]),  # Python's JSON parser takes NaN
    ],
)
async def test_lone_surrogates_and_nan_are_422_not_500(
    client: httpx.AsyncClient, rig: Rig, body: bytes, loc: list[str]
) -> None:
    headers = {"content-type": "application/json"}
    for path in ("/agents/eliza/messages", "/agents/eliza/messages/stream"):
        response = await client.post(path, content=body, headers=headers)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["detail"][0]["loc"] == loc
    assert await rig.db.count_memories(MemoryQuery()) == 0  # nothing half written


async def test_unknown_agent_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/agents/nobody/messages", json={"text": "hi"})
    assert response.status_code == 404
    assert "nobody" in response.json()["detail"] and "Eliza" in response.json()["detail"]
    assert (await client.get(f"/agents/{uuid4()}")).status_code == 404
    streamed = await client.post("/agents/nobody/messages/stream", json={"text": "hi"})
    assert streamed.status_code == 404
    memories = await client.get(f"/agents/nobody/rooms/{uuid4()}/memories")
    assert memories.status_code == 404 and "known agents: Eliza" in memories.json()["detail"]


async def test_stopped_agent_is_404(client: httpx.AsyncClient, rig: Rig) -> None:
    await rig.agents.stop("Eliza")
    response = await client.post("/agents/eliza/messages", json={"text": "hi"})
    assert response.status_code == 404 and "not running" in response.json()["detail"]


async def test_body_limit_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/agents/eliza/messages", json={"text": "x" * 5000})
    assert response.status_code == 413
    assert "4096" in response.json()["detail"]

    async def chunks() -> AsyncIterator[bytes]:  # no content-length: streamed body
        yield b'{"text": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    response = await client.post(
        "/agents/eliza/messages", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


async def test_openapi_served(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert "/agents/{agent}/messages" in schema["paths"]
    assert "/agents/{agent}/rooms/{room_id}/memories" in schema["paths"]


async def test_api_key_guards_everything_but_health(rig: Rig) -> None:
    srv = HttpServer(create_app(rig.agents, api_key="s3cret"), port=0)
    await srv.start()
    try:
        async with httpx.AsyncClient(base_url=srv.url) as http:
            assert (await http.get("/health")).status_code == 200
            for path in ("/ready", "/agents", "/agents/eliza", "/openapi.json", "/docs"):
                response = await http.get(path)
                assert response.status_code == 401, path
                assert API_KEY_HEADER in response.json()["detail"]
            wrong = await http.get("/agents", headers={API_KEY_HEADER: "nope"})
            assert wrong.status_code == 401
            posted = await http.post("/agents/eliza/messages", json={"text": "hi"})
            assert posted.status_code == 401
            for path in ("/agents", "/openapi.json", "/docs"):
                ok = await http.get(path, headers={API_KEY_HEADER: "s3cret"})
                assert ok.status_code == 200, path
            sent = await http.post(
                "/agents/eliza/messages", json={"text": "hi"}, headers={API_KEY_HEADER: "s3cret"}
            )
            assert sent.status_code == 200
    finally:
        await srv.stop()


async def test_a_failing_model_is_502_with_the_reason(client: httpx.AsyncClient, rig: Rig) -> None:
    async def refuse(params: TextParams) -> TextResult:
        raise ModelCallError("invalid API key", provider="broken", retryable=False, status=401)

    rig.models.register(ModelHandler(TEXT_LARGE, refuse, priority=100), owner="broken")
    response = await client.post("/agents/eliza/messages", json={"text": "hi"})
    assert response.status_code == 502
    assert "invalid API key" in response.json()["detail"]
    async with client.stream(
        "POST", "/agents/eliza/messages/stream", json={"text": "hi"}
    ) as streamed:
        lines = [line async for line in streamed.aiter_lines() if line]
    assert lines[0] == "event: error" and "invalid API key" in lines[1]
    rig.models.unregister_owner("broken")
    assert (await client.post("/agents/eliza/messages", json={"text": "hi"})).status_code == 200


async def test_stopping_the_server_ends_a_stalled_event_stream() -> None:
    """A client in the middle of a server-sent event stream whose source has stalled (a model
    waiting on its provider) does not hold up the host's shutdown."""
    import asyncio

    from fastapi import FastAPI
    from sse_starlette import EventSourceResponse

    app = FastAPI()

    @app.get("/stream")
    async def stream() -> EventSourceResponse:
        async def events() -> AsyncIterator[dict[str, str]]:
            yield {"data": "first"}
            await asyncio.Event().wait()  # never set: stalled for good

        return EventSourceResponse(events())

    server = HttpServer(app, port=0)
    await server.start()
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=None) as client,
        client.stream("GET", "/stream") as response,
    ):
        async for line in response.aiter_lines():
            if "first" in line:
                break
        await asyncio.wait_for(server.stop(), 20)  # hangs forever if the stream holds it
    assert server._task is not None and server._task.done()
