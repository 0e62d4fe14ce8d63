"""A message processed again after its worker died: each worker's own event handlers see the try
they run in (`current_try`: number, message id, idempotency key), and `MESSAGE_COMMITTED` is
emitted once, for the try that counted (real PostgreSQL and nats-server; kill -9 mid-message)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from contracts.cluster import MESSAGE_COMMITTED, MessageTry, current_try, trying

from .conftest import AGENT, LocalCluster

pytestmark = pytest.mark.postgres


async def test_each_try_is_numbered_for_local_handlers_and_only_the_committed_one_is_announced(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    notes = tmp_path / "tries.txt"
    cluster.env["CLUSTER_PROBE_TRIES"] = str(notes)
    cluster.plugins.append("audit")  # the trail on the shared PostgreSQL (event_log)
    w1 = cluster.spawn("w1", "worker")
    w2 = cluster.spawn("w2", "worker")
    cluster.spawn("api", "api")
    await cluster.wait_workers("w1", "w2")
    room = str(uuid4())
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=120) as client:
        hang = asyncio.create_task(
            client.post(
                f"/agents/{AGENT}/messages",
                json={"text": "HANG a while", "room_id": room},
                headers={"Idempotency-Key": "pay-1"},
            )
        )
        deadline = time.monotonic() + 30
        while not (notes.exists() and " received " in notes.read_text()):
            assert time.monotonic() < deadline, "no worker started the message"
            await asyncio.sleep(0.05)
        first_pid = int(notes.read_text().split()[0])
        recorded = "SELECT 1 FROM event_log WHERE event_type = 'message:received'"
        while not await cluster.sql(recorded):  # the trail writes within ~20 ms (or less)
            assert time.monotonic() < deadline, "the audit trail recorded nothing"
            await asyncio.sleep(0.05)
        victim, other = ("w1", w2) if first_pid == w1.pid else ("w2", w1)
        cluster.kill(victim)  # mid-message (its model call hangs 3 s): the other takes over
        response = await hang
    assert response.status_code == 200
    message_id = response.json()["message_id"]
    # announced after the reply was sent (its handlers do not delay the answer)
    deadline = time.monotonic() + 30
    while " committed " not in notes.read_text():
        assert time.monotonic() < deadline, notes.read_text()
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # nothing else comes
    lines = [line.split() for line in notes.read_text().splitlines()]
    assert lines == [
        [str(first_pid), "received", message_id, "1", "pay-1"],
        [str(other.pid), "received", message_id, "2", "pay-1"],
        [str(other.pid), "committed", message_id, "2", "pay-1"],
    ]
    # the audit trail stores which try each event of the message belonged to
    query = (
        "SELECT metadata->>'try', metadata->>'message_id' FROM event_log"
        " WHERE event_type = %s AND correlation_id = %s ORDER BY position"
    )
    deadline = time.monotonic() + 10
    while len(await cluster.sql(query, "message:sent", message_id)) < 1:
        assert time.monotonic() < deadline, "the reply was not recorded"
        await asyncio.sleep(0.1)
    assert await cluster.sql(query, "message:received", message_id) == [
        ("1", message_id),
        ("2", message_id),
    ]
    assert await cluster.sql(query, "message:sent", message_id) == [("2", message_id)]


def test_outside_a_workers_turn_there_is_no_try() -> None:
    assert current_try() is None
    attempt = MessageTry(
        agent_id=uuid4(),
        room_id=uuid4(),
        message_id=uuid4(),
        number=2,
        idempotency_key=None,
        worker="w",
    )
    with trying(attempt):
        assert current_try() is attempt
    assert current_try() is None
    assert MESSAGE_COMMITTED.payload is MessageTry
