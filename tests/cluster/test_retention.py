"""The queue's retention: a worker purges the messages answered more than ``cluster.retention``
ago (parked ones stay), and an ``Idempotency-Key`` whose message was purged is then a new message
(real PostgreSQL, nats-server, worker and API processes; a retention of 4 s, two leases)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from .conftest import AGENT, LocalCluster

pytestmark = pytest.mark.postgres


async def test_answered_messages_are_purged_after_the_retention_and_their_keys_are_new_again(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    notes = tmp_path / "tries.txt"
    cluster.env["CLUSTER_PROBE_TRIES"] = str(notes)
    cluster.settings.update({"retention": 4, "purge_interval": 0.3, "purge_batch": 2})
    cluster.spawn("w1", "worker")
    cluster.spawn("api", "api")
    await cluster.wait_workers("w1")
    room = str(uuid4())
    body = {"text": "keyed", "room_id": room}
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=60) as client:
        url = f"/agents/{AGENT}/messages"
        first = await client.post(url, json=body, headers={"Idempotency-Key": "k-1"})
        # within the retention the key is the same message: answered from the queue (asked
        # at once: the retention runs from the first reply)
        again = await client.post(url, json=body, headers={"Idempotency-Key": "k-1"})
        assert first.status_code == 200 and again.json() == first.json()
        message_id = first.json()["message_id"]
        assert notes.read_text().count(f"received {message_id} ") == 1
        for i in range(4):
            assert (await client.post(url, json={"text": f"m{i}", "room_id": room})).is_success
        poisoned = await client.post(url, json={"text": "POISON", "room_id": room})
        assert poisoned.status_code >= 400
        deadline = time.monotonic() + 20
        while await cluster.sql("SELECT 1 FROM cluster_messages WHERE status = 'done'"):
            assert time.monotonic() < deadline, "answered messages are still kept"
            await asyncio.sleep(0.2)
        assert await cluster.sql("SELECT status FROM cluster_messages") == [("parked",)]
        # purged: the key is a new message, processed again
        later = await client.post(url, json=body, headers={"Idempotency-Key": "k-1"})
    assert later.status_code == 200
    assert later.json()["message_id"] == message_id  # the id is derived from the key
    assert notes.read_text().count(f"received {message_id} ") == 2
    stored = await cluster.sql(
        "SELECT content::json->>'text' FROM memories WHERE room_id = %s AND"
        " content::json->>'text' IN ('keyed', 're: keyed')",
        room,
    )
    assert sorted(r[0] for r in stored) == ["keyed", "re: keyed"]  # its ids: written once
    assert "purged" in cluster.log("w1")
