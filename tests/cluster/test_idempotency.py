"""``Idempotency-Key`` in cluster mode across API processes: the same key with the same body is
the same message (the first one's answer), with another body a 409 naming the key, as in
single-process mode (real PostgreSQL and nats-server; two API processes and a worker)."""

from __future__ import annotations

import asyncio
import json
from uuid import uuid4

import httpx
import pytest

from .conftest import AGENT, LocalCluster

pytestmark = pytest.mark.postgres


async def post(api: str, text: str, room: str, key: str, *, stream: bool = False) -> httpx.Response:
    route = f"/agents/{AGENT}/messages" + ("/stream" if stream else "")
    async with httpx.AsyncClient(base_url=api, timeout=120) as client:
        return await client.post(
            route, json={"text": text, "room_id": room}, headers={"Idempotency-Key": key}
        )


async def test_a_key_sent_to_another_api_process_with_another_body_is_a_409_naming_it(
    cluster: LocalCluster,
) -> None:
    cluster.spawn("w1", "worker")
    cluster.spawn("a", "api")
    api_a = cluster.api_url
    cluster.spawn("b", "api")
    api_b = cluster.api_url
    assert api_a != api_b
    await cluster.wait_workers("w1")
    room = str(uuid4())

    first = await post(api_a, "hello", room, "order-7")
    assert first.status_code == 200, first.text
    # the same key and body through the other process: the first one's answer, not a new message
    again = await post(api_b, "hello", room, "order-7")
    assert again.status_code == 200, again.text
    assert again.json()["message_id"] == first.json()["message_id"]
    assert again.json()["reply"]["id"] == first.json()["reply"]["id"]
    # the same key with another body, through either process and either route: refused
    for api, stream in ((api_b, False), (api_a, False), (api_b, True)):
        other = await post(api, "goodbye", room, "order-7", stream=stream)
        assert other.status_code == 409, other.text
        assert "Idempotency-Key 'order-7'" in other.json()["detail"]
    # another room is another body too
    moved = await post(api_b, "hello", str(uuid4()), "order-7")
    assert moved.status_code == 409

    rows = await cluster.sql(
        "SELECT idem_key, message::json->'content'->>'text' FROM cluster_messages"
    )
    assert rows == [("order-7", "hello")]
    lines = await cluster.sql(
        "SELECT content::json->>'text' FROM memories WHERE room_id = %s ORDER BY created_at", room
    )
    assert [r[0] for r in lines] == ["hello", "re: hello"]


async def test_a_key_sent_twice_at_once_to_two_api_processes_is_one_message(
    cluster: LocalCluster,
) -> None:
    cluster.env["CLUSTER_PROBE_DELAY"] = "0.3"
    cluster.spawn("w1", "worker")
    cluster.spawn("a", "api")
    api_a = cluster.api_url
    cluster.spawn("b", "api")
    api_b = cluster.api_url
    await cluster.wait_workers("w1")
    room = str(uuid4())

    async def reuse_meanwhile() -> httpx.Response:
        await asyncio.sleep(0.15)  # the message is taken and its 0.3 s model call runs
        return await post(api_b, "not the same", room, "k-9")

    plain, streamed, reused = await asyncio.gather(
        post(api_a, "at once", room, "k-9"),
        post(api_b, "at once", room, "k-9", stream=True),
        reuse_meanwhile(),
    )
    assert plain.status_code == 200 and streamed.status_code == 200
    events = [line for line in streamed.text.splitlines() if line.startswith("data: ")]
    reply = json.loads(events[-1].removeprefix("data: "))
    assert reply["message_id"] == plain.json()["message_id"]
    assert reply["text"] == plain.json()["text"] == "re: at once"
    assert reused.status_code == 409, reused.text
    taken = await cluster.sql("SELECT message::json->'content'->>'text' FROM cluster_messages")
    assert taken == [("at once",)]
