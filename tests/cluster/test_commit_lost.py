"""A message's commit whose connection drops after PostgreSQL committed it (its answer lost): the
worker's retry recognises its own landed commit, so the room goes on (the next message the
commit took, the room it claimed) without waiting out a lease, and `message:committed` is emitted
once per message (real PostgreSQL, nats-server and worker process; a proxy cuts the commits)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from .conftest import AGENT, LocalCluster
from .pgproxy import CLAIMING, CommitCutter

pytestmark = pytest.mark.postgres


async def test_a_commit_whose_answer_was_lost_is_recognised_and_the_rooms_go_on(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    notes = tmp_path / "tries.txt"
    cluster.env["CLUSTER_PROBE_TRIES"] = str(notes)
    cluster.env["CLUSTER_PROBE_HANG"] = "1"
    cluster.settings["concurrency"] = 1  # room b waits for room a's last commit to claim it
    cluster.settings["lease"] = 30  # a room left held would wait 30 s
    # the first two message commits are cut off: a1's (which takes a2) and a2's (which lets
    # room a go and claims room b)
    cutter = CommitCutter(cluster.url, cuts=2)
    direct, cluster.url = cluster.url, await cutter.start()
    try:
        cluster.spawn("w1", "worker")
    finally:
        cluster.url = direct
    cluster.spawn("api", "api")
    try:
        await cluster.wait_workers("w1")
        room_a, room_b = str(uuid4()), str(uuid4())
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=cluster.api_url, timeout=60) as client:

            async def send(text: str, room: str) -> httpx.Response:
                return await client.post(
                    f"/agents/{AGENT}/messages", json={"text": text, "room_id": room}
                )

            first = asyncio.create_task(send("a1 HANG", room_a))
            deadline = time.monotonic() + 20
            while not (notes.exists() and " received " in notes.read_text()):
                assert time.monotonic() < deadline, "no worker started a1"
                await asyncio.sleep(0.05)
            # a1 is running (for 1 s): a2 and b1 wait
            try:
                responses = await asyncio.wait_for(
                    asyncio.gather(first, send("a2", room_a), send("b1", room_b)), 20
                )
            except TimeoutError:  # a room left held: say what the members saw
                rooms = await cluster.sql("SELECT room_id, holder, fence FROM cluster_rooms")
                messages = await cluster.sql(
                    "SELECT message::json->'content'->>'text', status, tries FROM cluster_messages"
                )
                raise AssertionError(
                    f"no replies in 20 s (cut {cutter.cut}); rooms {rooms}; messages {messages};"
                    f" probe: {notes.read_text()}; w1: {cluster.log('w1')[-6000:]};"
                    f" api: {cluster.log('api')[-3000:]}"
                ) from None
        took = time.monotonic() - started
    finally:
        await cutter.close()
    assert [r.status_code for r in responses] == [200, 200, 200], [r.text for r in responses]
    assert [r.json()["text"] for r in responses] == ["re: a1 HANG", "re: a2", "re: b1"]
    assert cutter.cut == 2
    assert took < 15  # no lease (30 s) waited out
    ids = [r.json()["message_id"] for r in responses]
    deadline = time.monotonic() + 10
    while notes.read_text().count(" committed ") < 3:
        assert time.monotonic() < deadline, notes.read_text()
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # nothing else comes
    lines = notes.read_text().splitlines()
    assert lines[0].split()[1:3] == ["received", ids[0]]  # the line waited for was a1's
    committed = [line.split()[1:4] for line in lines if " committed " in line]
    assert committed == [["committed", message_id, "1"] for message_id in ids]
    rows = await cluster.sql(
        "SELECT message::json->'content'->>'text', status, tries FROM cluster_messages"
        " ORDER BY done_at"
    )
    assert rows == [("a1 HANG", "done", 1), ("a2", "done", 1), ("b1", "done", 1)]
    for room, texts in ((room_a, ["a1 HANG", "a2"]), (room_b, ["b1"])):
        stored = await cluster.sql(
            "SELECT content::json->>'text' FROM memories WHERE room_id = %s"
            " ORDER BY created_at, id",
            room,
        )
        assert sorted(r[0] for r in stored) == sorted(texts + [f"re: {t}" for t in texts])
    log = cluster.log("w1")
    assert "landed" in log and "nothing committed" not in log
    pending = await cluster.sql("SELECT count(*) FROM cluster_rooms WHERE holder IS NOT NULL")
    assert pending == [(0,)]


async def test_a_stop_while_a_commit_answer_is_lost_still_serves_the_message_it_took(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """The worker is told to stop (SIGTERM) while it waits for the answer of a commit that took
    the room's next message; the answer is lost. Its retry asks what that commit did, not what
    a commit made now would do: it finds the message the commit took (its try counted) and
    serves it while draining, on that first try (not left to another worker's second try)."""
    notes = tmp_path / "tries.txt"
    cluster.env["CLUSTER_PROBE_TRIES"] = str(notes)
    cluster.env["CLUSTER_PROBE_HANG"] = "1"
    cluster.settings["concurrency"] = 1
    cluster.settings["lease"] = 30
    cutter = CommitCutter(
        cluster.url, cuts=1, on_cut=lambda: cluster.kill("w1", signal.SIGTERM), hold=0.5
    )
    direct, cluster.url = cluster.url, await cutter.start()
    try:
        worker = cluster.spawn("w1", "worker")
    finally:
        cluster.url = direct
    cluster.spawn("api", "api")
    try:
        await cluster.wait_workers("w1")
        room = str(uuid4())
        async with httpx.AsyncClient(base_url=cluster.api_url, timeout=60) as client:

            async def send(text: str) -> httpx.Response:
                return await client.post(
                    f"/agents/{AGENT}/messages", json={"text": text, "room_id": room}
                )

            first = asyncio.create_task(send("a1 HANG"))
            deadline = time.monotonic() + 20
            while not (notes.exists() and " received " in notes.read_text()):
                assert time.monotonic() < deadline, "no worker started a1"
                await asyncio.sleep(0.05)
            second = asyncio.create_task(send("a2"))  # queued while a1 runs: a1's commit takes it
            deadline = time.monotonic() + 20
            while worker.poll() is None:  # w1 drains, then exits
                assert time.monotonic() < deadline, cluster.log("w1")[-3000:]
                await asyncio.sleep(0.1)
            rows = await cluster.sql(
                "SELECT message::json->'content'->>'text', status, tries FROM cluster_messages"
                " ORDER BY created_at"
            )
            assert cutter.cut == 1
            assert rows == [("a1 HANG", "done", 1), ("a2", "done", 1)], cluster.log("w1")[-3000:]
            responses = await asyncio.wait_for(asyncio.gather(first, second), 20)
    finally:
        await cutter.close()
    assert [r.json()["text"] for r in responses] == ["re: a1 HANG", "re: a2"]
    assert worker.returncode == 0
    assert "landed" in cluster.log("w1")


async def test_a_claim_whose_answer_was_lost_is_found_and_its_room_served_at_once(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """The claim of a room (taking its first message) commits, and its answer is lost with the
    connection: the worker finds the room its claim holds by the claim's token and serves the
    message at once, on its first try, instead of leaving the room held until the lease (30 s)
    ends."""
    cluster.settings["lease"] = 30
    cluster.spawn("api", "api")
    room = str(uuid4())
    cutter = CommitCutter(cluster.url, cuts=1, marker=CLAIMING)
    try:
        async with httpx.AsyncClient(base_url=cluster.api_url, timeout=60) as client:
            deadline = time.monotonic() + 30
            while True:  # the API is up
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/health")).status_code == 200:
                        break
                assert time.monotonic() < deadline, cluster.log("api")[-3000:]
                await asyncio.sleep(0.1)
            sent = asyncio.create_task(
                client.post(f"/agents/{AGENT}/messages", json={"text": "m1", "room_id": room})
            )
            while not await cluster.sql("SELECT 1 FROM cluster_messages"):  # queued
                assert time.monotonic() < deadline, cluster.log("api")[-3000:]
                await asyncio.sleep(0.05)
            started = time.monotonic()
            direct, cluster.url = cluster.url, await cutter.start()
            try:
                cluster.spawn("w1", "worker")  # its first claim finds the room: cut
            finally:
                cluster.url = direct
            response = await asyncio.wait_for(sent, 25)
            took = time.monotonic() - started
    finally:
        await cutter.close()
    assert response.status_code == 200 and response.json()["text"] == "re: m1", response.text
    assert cutter.cut == 1
    assert took < 15, took  # no lease waited out
    rows = await cluster.sql("SELECT status, tries FROM cluster_messages")
    assert rows == [("done", 1)]
    assert "after the claim had landed" in cluster.log("w1")
