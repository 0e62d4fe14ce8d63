"""``Idempotency-Key`` in single-process mode, through a real uvicorn server: a retried POST
gets the original reply and stores nothing twice (at once, concurrently, streamed, after a
restart of the host), the same key with another body is a 409, and a failed message leaves its
key free."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from contracts.config import AgentsSettings, HostConfig, HttpSettings, PluginsSettings
from contracts.memory import MemoryQuery
from contracts.models import TEXT_LARGE, ModelCallError, ModelHandler, TextParams, TextResult
from host.app import Host
from host.config import LoadedConfig
from host.http import HttpServer, create_app
from host.http_idempotency import INGRESS_FILE, IngressLog, LocalIngress, message_id_for

from .runtime_helpers import Rig

MESSAGES = "/agents/eliza/messages"


@contextlib.asynccontextmanager
async def _served(rig: Rig, log: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A real server for `rig`'s agents, keyed messages logged in the file `log`, and a client
    of it."""
    server = HttpServer(create_app(rig.agents, ingress=LocalIngress(IngressLog(log))), port=0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            yield http
    finally:
        await server.stop()


@pytest.fixture
async def client(rig: Rig, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with _served(rig, tmp_path / INGRESS_FILE) as http:
        yield http


async def _send_keyed(http: httpx.AsyncClient, key: str) -> tuple[httpx.Response, str]:
    """POST "hi" with `key` into a new room: the answer and the room."""
    room = str(uuid4())
    answer = await http.post(
        MESSAGES, json={"text": "hi", "room_id": room}, headers={"Idempotency-Key": key}
    )
    return answer, room


async def _stored(rig: Rig, room: str) -> list[Any]:
    return await rig.db.get_memories(MemoryQuery(room_id=UUID(room), order="asc", limit=100))


async def test_a_retried_post_gets_the_first_reply_and_stores_nothing_twice(
    client: httpx.AsyncClient, rig: Rig
) -> None:
    room = str(uuid4())
    body = {"text": "I feel tired today", "room_id": room}
    first = await client.post(MESSAGES, json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 200, first.text
    again = await client.post(MESSAGES, json=body, headers={"Idempotency-Key": "k-1"})
    assert again.status_code == 200
    assert again.json() == first.json()
    assert first.json()["message_id"] == str(message_id_for(rig.runtime.agent_id, "k-1"))
    assert len(await _stored(rig, room)) == 2  # the message and its reply, once each

    # without a key, the same body is a new message
    assert (await client.post(MESSAGES, json=body)).status_code == 200
    assert len(await _stored(rig, room)) == 4


async def test_the_same_key_with_another_body_is_a_409_naming_the_header(
    client: httpx.AsyncClient, rig: Rig
) -> None:
    room = str(uuid4())
    headers = {"Idempotency-Key": "k-2"}
    assert (
        await client.post(MESSAGES, json={"text": "hello", "room_id": room}, headers=headers)
    ).is_success
    for other in ({"text": "goodbye", "room_id": room}, {"text": "hello", "room_id": str(uuid4())}):
        refused = await client.post(MESSAGES, json=other, headers=headers)
        assert refused.status_code == 409
        detail = refused.json()["detail"]
        assert "Idempotency-Key 'k-2'" in detail and "another message" in detail
        stream = await client.post(f"{MESSAGES}/stream", json=other, headers=headers)
        assert stream.status_code == 409  # refused before the stream starts
    assert len(await _stored(rig, room)) == 2


async def test_concurrent_requests_with_one_key_run_it_once(
    client: httpx.AsyncClient, rig: Rig
) -> None:
    room = str(uuid4())
    body = {"text": "Why do I dream of boats?", "room_id": room}
    answers = await asyncio.gather(
        *(client.post(MESSAGES, json=body, headers={"Idempotency-Key": "k-3"}) for _ in range(8))
    )
    assert {a.status_code for a in answers} == {200}
    assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1
    assert len(await _stored(rig, room)) == 2


async def test_a_streamed_retry_gets_the_reply_as_one_chunk(
    client: httpx.AsyncClient, rig: Rig
) -> None:
    room = str(uuid4())
    body = {"text": "I am happy", "room_id": room}
    headers = {"Idempotency-Key": "k-4"}
    streamed = await client.post(f"{MESSAGES}/stream", json=body, headers=headers)
    first = _sse(streamed.text)
    again = _sse((await client.post(f"{MESSAGES}/stream", json=body, headers=headers)).text)
    posted = (await client.post(MESSAGES, json=body, headers=headers)).json()
    reply = json.loads(first[-1][1])
    assert first[-1][0] == again[-1][0] == "reply"
    assert json.loads(again[-1][1])["message_id"] == reply["message_id"] == posted["message_id"]
    assert [json.loads(d)["text"] for e, d in again if e == "chunk"] == [reply["text"]]
    assert posted["reply"]["id"] == reply["reply"]["id"]
    assert len(await _stored(rig, room)) == 2


async def test_a_failed_message_leaves_nothing_and_its_key_runs_it_again(
    client: httpx.AsyncClient, rig: Rig
) -> None:
    async def refuse(_params: TextParams) -> TextResult:
        raise ModelCallError("overloaded", provider="broken", retryable=False, status=400)

    rig.models.register(ModelHandler(TEXT_LARGE, refuse, priority=100), owner="broken")
    room = str(uuid4())
    body = {"text": "Tell me something", "room_id": room}
    headers = {"Idempotency-Key": "k-5"}
    failed = await client.post(MESSAGES, json=body, headers=headers)
    assert failed.status_code == 502
    assert await _stored(rig, room) == []  # the stored message went with the failure
    rig.models.unregister_owner("broken")
    retried = await client.post(MESSAGES, json=body, headers=headers)
    assert retried.status_code == 200, retried.text
    assert retried.json()["message_id"] == str(message_id_for(rig.runtime.agent_id, "k-5"))
    assert len(await _stored(rig, room)) == 2


async def test_keys_survive_a_restart_and_a_stop_between_store_and_record(
    tmp_path: Path,
) -> None:
    config = HostConfig.model_validate(
        {
            "data_dir": tmp_path / "data",
            "http": HttpSettings(port=0),
            "agents": AgentsSettings(characters=[{"name": "Ada", "bio": "Listens."}]),
            "plugins": PluginsSettings(enabled=["sqlite", "eliza"]),
        }
    )
    room = str(uuid4())
    body = {"text": "I keep forgetting things", "room_id": room}
    path = "/agents/ada/messages"

    async def post(key: str, before: Any = None) -> tuple[dict[str, Any], int]:
        async with Host(LoadedConfig(config, None)) as host:
            await host.start_http()
            if before is not None:
                await before(host)
            assert host.http is not None
            async with httpx.AsyncClient(base_url=host.http.url, timeout=30) as http:
                answer = await http.post(path, json=body, headers={"Idempotency-Key": key})
            assert answer.status_code == 200, answer.text
            assert host.agents is not None
            stored = await host.agents.get("ada").database.count_memories(
                MemoryQuery(room_id=UUID(room))
            )
            return answer.json(), stored

    first, stored = await post("k-6")
    assert stored == 2
    again, stored = await post("k-6")  # another host process over the same data dir
    assert again == first and stored == 2

    # a host stopped after the store committed the reply, before the key was recorded done:
    # the reply is found in the store
    ingress = tmp_path / "data" / INGRESS_FILE
    with sqlite3.connect(ingress) as conn:
        conn.execute("UPDATE ingress SET status = 'pending', reply = NULL")
    recovered, stored = await post("k-6")
    assert stored == 2
    assert recovered["message_id"] == first["message_id"]
    assert recovered["reply"]["id"] == first["reply"]["id"]
    assert recovered["text"] == first["text"]
    with sqlite3.connect(ingress) as conn:
        assert conn.execute("SELECT status FROM ingress").fetchall() == [("done",)]

    # stopped after storing the message, before its reply: the message runs again, once
    async def lose_reply(host: Host) -> None:
        assert host.agents is not None
        database = host.agents.get("ada").database
        assert await database.delete_memory(UUID(first["reply"]["id"]))

    with sqlite3.connect(ingress) as conn:
        conn.execute("UPDATE ingress SET status = 'pending', reply = NULL")
    rerun, stored = await post("k-6", lose_reply)
    assert stored == 2
    assert rerun["message_id"] == first["message_id"]
    assert rerun["reply"]["id"] != first["reply"]["id"]


def _sse(text: str) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != ":"
        )
        if "event" in fields:
            events.append((fields["event"], fields.get("data", "")))
    return events


async def test_the_log_makes_its_directory_when_the_data_dir_does_not_exist(
    rig: Rig, tmp_path: Path
) -> None:
    """With the PostgreSQL store nothing else creates the data dir: the first keyed request
    used to end in a 500 ("unable to open database file")."""
    path = tmp_path / "not" / "yet" / INGRESS_FILE
    async with _served(rig, path) as http:
        sent, _room = await _send_keyed(http, "d-1")
    assert sent.status_code == 200, sent.text
    assert path.exists()


async def test_a_log_that_cannot_be_opened_is_a_503_naming_it_and_runs_nothing(
    rig: Rig, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    path = blocker / INGRESS_FILE  # its parent is a file: neither made nor opened
    async with _served(rig, path) as http:
        refused, room = await _send_keyed(http, "d-2")
    assert refused.status_code == 503, refused.text
    detail = refused.json()["detail"]
    assert str(path) in detail and "Traceback" not in refused.text
    assert await _stored(rig, room) == []


async def test_a_damaged_log_is_a_503_naming_it(rig: Rig, tmp_path: Path) -> None:
    """sqlite3 opens any file; a damaged one fails at its first statement, which is inside the
    same guard (it was a 500 with a traceback)."""
    path = tmp_path / INGRESS_FILE
    path.write_bytes(b"this is not a SQLite database" * 100)
    async with _served(rig, path) as http:
        refused, room = await _send_keyed(http, "d-3")
    assert refused.status_code == 503, refused.text
    assert str(path) in refused.json()["detail"] and "Traceback" not in refused.text
    assert await _stored(rig, room) == []


async def test_keyed_messages_to_one_room_run_in_arrival_order_however_their_records_end(
    rig: Rig, tmp_path: Path
) -> None:
    """Recording a key is a write on a worker thread, and such writes end in any order (a slow
    fsync): message 0's record is made to end last here. The room still runs its messages in
    the order they arrived, keyed or not, each reply right after its message."""
    log = IngressLog(tmp_path / INGRESS_FILE)
    claim = log._claim
    slow = {message_id_for(rig.runtime.agent_id, "order-0")}

    def slow_claim(message_id: UUID, agent_id: UUID, key: str, print_: str) -> Any:
        if message_id in slow:
            import time

            time.sleep(0.3)
        return claim(message_id, agent_id, key, print_)

    log._claim = slow_claim  # type: ignore[method-assign]
    server = HttpServer(create_app(rig.agents, ingress=LocalIngress(log)), port=0)
    await server.start()
    room = str(uuid4())
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:

            async def send(i: int) -> httpx.Response:
                await asyncio.sleep(0.02 * i)  # arrival order: 0, 1, 2, ...
                headers = {"Idempotency-Key": f"order-{i}"} if i % 3 != 2 else {}
                body = {"text": f"message {i}", "room_id": room}
                return await http.post(MESSAGES, json=body, headers=headers)

            answers = await asyncio.gather(*(send(i) for i in range(6)))
    finally:
        await server.stop()
    assert [a.status_code for a in answers] == [200] * 6
    assert len(await _stored(rig, room)) == 12  # each message and its reply, once
    # the model's prompts, in the order the room ran its turns: each ends with its message
    ran = [max(range(6), key=lambda i: p.rfind(f"message {i}")) for p in rig.prompts]
    assert ran == list(range(6))
