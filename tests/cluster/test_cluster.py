"""Cluster mode across processes: order, dedup at ingress, takeover, fencing, backpressure,
parking (real PostgreSQL and nats-server; the members are `agenthost run --role` processes)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from host.cluster.local import free_port, start_nats, stop_process

from .conftest import AGENT, LocalCluster

pytestmark = pytest.mark.postgres


async def send(client: httpx.AsyncClient, text: str, room: str, **headers: str) -> httpx.Response:
    return await client.post(
        f"/agents/{AGENT}/messages", json={"text": text, "room_id": room}, headers=headers
    )


async def room_lines(cluster: LocalCluster, room: str) -> list[str]:
    rows = await cluster.sql(
        "SELECT content::json->>'text' FROM memories WHERE room_id = %s ORDER BY created_at, id",
        room,
    )
    return [r[0] for r in rows]


async def test_two_workers_keep_each_rooms_order_and_answer_each_message_once(
    cluster: LocalCluster,
) -> None:
    cluster.env["CLUSTER_PROBE_DELAY"] = "0.02"
    # one room at a time each: a worker quicker to wake cannot take all four rooms
    cluster.settings["concurrency"] = 1
    cluster.spawn("w1", "worker")
    cluster.spawn("w2", "worker")
    cluster.spawn("api", "api")
    await cluster.wait_workers("w1", "w2")
    rooms = [str(uuid4()) for _ in range(4)]
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=180) as client:

        async def converse(room: str) -> list[str]:
            texts = []
            for i in range(6):  # each sent before the previous is answered
                texts.append(f"{room[:4]} m{i}")
            responses = []
            for text in texts:
                responses.append(asyncio.create_task(send(client, text, room)))
                await asyncio.sleep(0.005)
            return [(await r).json()["text"] for r in responses]

        answers = await asyncio.gather(*(converse(room) for room in rooms))
    for room, replies in zip(rooms, answers, strict=True):
        assert replies == [f"re: {room[:4]} m{i}" for i in range(6)]
        seq = await cluster.sql(
            "SELECT message::json->'content'->>'text' FROM cluster_messages"
            " WHERE room_id = %s ORDER BY room_seq",
            room,
        )
        arrival = [r[0] for r in seq]
        lines = await room_lines(cluster, room)
        # each message stored once and answered once, the answers in arrival order
        assert [line for line in lines if not line.startswith("re: ")] == arrival
        assert [line for line in lines if line.startswith("re: ")] == [f"re: {t}" for t in arrival]
        done = await cluster.sql(
            "SELECT room_seq FROM cluster_messages WHERE room_id = %s ORDER BY done_at", room
        )
        assert [r[0] for r in done] == sorted(r[0] for r in done)
    workers = await cluster.sql("SELECT DISTINCT worker FROM cluster_messages")
    assert {w[0] for w in workers} == {"w1", "w2"}  # both took part


async def test_a_message_sent_again_with_its_idempotency_key_is_taken_once(
    cluster: LocalCluster,
) -> None:
    cluster.spawn("w1", "worker")
    cluster.spawn("api", "api")
    await cluster.wait_workers("w1")
    room = str(uuid4())
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=180) as client:
        first, second = await asyncio.gather(
            send(client, "hello", room, **{"Idempotency-Key": "k-1"}),
            send(client, "hello", room, **{"Idempotency-Key": "k-1"}),
        )
        third = await send(client, "hello", room, **{"Idempotency-Key": "k-1"})
        other = await send(client, "hello", room, **{"Idempotency-Key": "k-2"})
    assert first.status_code == second.status_code == third.status_code == 200
    assert first.json()["message_id"] == second.json()["message_id"] == third.json()["message_id"]
    assert first.json()["reply"]["id"] == third.json()["reply"]["id"]
    assert other.json()["message_id"] != first.json()["message_id"]
    assert await room_lines(cluster, room) == ["hello", "re: hello", "hello", "re: hello"]
    assert (await cluster.sql("SELECT count(*) FROM cluster_messages"))[0][0] == 2


async def wait_for(condition: object, what: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def first_try_holder(cluster: LocalCluster) -> str:
    """The worker that started a message's first try, once one has (waiting up to 30 s)."""
    holders: list[str] = []

    async def someone_is_on_it() -> bool:
        rows = await cluster.sql("SELECT worker FROM cluster_messages WHERE tries = 1")
        holders[:] = [row[0] for row in rows]
        return bool(rows)

    await wait_for(someone_is_on_it, "a worker to start the message")
    return holders[0]


async def test_a_killed_workers_room_is_taken_over_within_the_lease_and_answered_once(
    cluster: LocalCluster,
) -> None:
    cluster.spawn("w1", "worker")
    cluster.spawn("w2", "worker")
    cluster.spawn("api", "api")
    await cluster.wait_workers("w1", "w2")
    room = str(uuid4())
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=180) as client:
        hang = asyncio.create_task(send(client, "HANG here", room))
        await wait_for(lambda: _count(cluster, 1), "the first message queued")
        after = asyncio.create_task(send(client, "then this", room))
        victim = await first_try_holder(cluster)
        other = "w2" if victim == "w1" else "w1"
        cluster.kill(victim)  # mid-message: its model call hangs for 3 s
        killed = time.monotonic()
        first, second = await hang, await after
        answered = time.monotonic() - killed
    assert first.status_code == 200 and first.json()["text"] == "re: HANG here"
    assert second.json()["text"] == "re: then this"
    # lease 2 s + poll + the 3 s model call of the second try (+ slack for a loaded machine)
    assert answered < 2 + 1 + 3 + 4
    lines = await room_lines(cluster, room)
    assert lines == ["HANG here", "then this", "re: HANG here", "re: then this"]
    rows = await cluster.sql("SELECT worker, tries, status FROM cluster_messages ORDER BY room_seq")
    assert rows[0] == (other, 2, "done")
    status = await cluster.sql("SELECT redeliveries FROM cluster_rooms WHERE room_id = %s", room)
    assert status[0][0] == 1


async def test_a_worker_paused_past_its_lease_cannot_commit_afterwards(
    cluster: LocalCluster,
) -> None:
    cluster.env["CLUSTER_PROBE_HANG"] = "1.5"
    cluster.spawn("w1", "worker")
    cluster.spawn("w2", "worker")
    cluster.spawn("api", "api")
    await cluster.wait_workers("w1", "w2")
    room = str(uuid4())
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=180) as client:
        hang = asyncio.create_task(send(client, "HANG on", room))
        holder = await first_try_holder(cluster)
        other = "w2" if holder == "w1" else "w1"
        cluster.kill(holder, signal.SIGSTOP)  # paused mid-message, for longer than the lease
        response = await hang  # the other worker took the room over and answered
        assert response.json()["text"] == "re: HANG on"
        cluster.kill(holder, signal.SIGCONT)  # its model call returns: its commit is refused

        async def refused() -> bool:
            return "nothing committed" in cluster.log(holder) or "lost room" in cluster.log(holder)

        await wait_for(refused, "the paused worker to find its room taken")
    rows = await cluster.sql("SELECT worker, tries, status FROM cluster_messages")
    assert rows == [(other, 2, "done")]
    assert await room_lines(cluster, room) == ["HANG on", "re: HANG on"]


async def test_a_room_over_its_backlog_limit_gets_429_with_retry_after(
    cluster: LocalCluster,
) -> None:
    cluster.settings["backlog_limit"] = 2
    cluster.settings["retry_after"] = 7
    cluster.spawn("api", "api")  # no worker: the backlog only grows
    room = str(uuid4())
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=180) as client:
        waiting = []
        for i in range(2):  # one after the other: two sent at once may arrive either way round
            waiting.append(asyncio.create_task(send(client, f"m{i}", room)))

            async def queued(count: int = i + 1) -> bool:
                return (await cluster.sql("SELECT count(*) FROM cluster_messages"))[0][0] == count

            await wait_for(queued, f"{i + 1} queued messages")
        refused = await send(client, "one too many", room)
        elsewhere = asyncio.create_task(send(client, "other room", str(uuid4())))
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "7"
        assert "limit 2" in refused.json()["detail"]

        async def three() -> bool:
            return (await cluster.sql("SELECT count(*) FROM cluster_messages"))[0][0] == 3

        await wait_for(three, "the other room's message taken")
        cluster.spawn("w1", "worker")
        assert [(await w).status_code for w in waiting] == [200, 200]
        assert (await elsewhere).status_code == 200
    assert await room_lines(cluster, room) == ["m0", "m1", "re: m0", "re: m1"]


async def test_a_message_failing_every_try_is_parked_with_its_error_and_the_room_moves_on(
    cluster: LocalCluster,
) -> None:
    cluster.spawn("w1", "worker")
    cluster.spawn("api", "api")
    await cluster.wait_workers("w1")
    room = str(uuid4())
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=180) as client:
        poison = asyncio.create_task(send(client, "POISON pill", room))

        async def queued() -> bool:  # the room's order is the queue's, not the sends'
            return bool(await cluster.sql("SELECT 1 FROM cluster_messages"))

        await wait_for(queued, "the poison pill in the queue")
        after = await send(client, "still here", room)
        parked = await poison

        async def counted() -> bool:  # the members' counters come with their heartbeats
            status = (await client.get("/cluster")).json()
            return any(m["id"] == "w1" and m["processed"] == 1 for m in status["members"])

        await wait_for(counted, "w1's next heartbeat")
        status = (await client.get("/cluster")).json()
    assert parked.status_code == 502
    assert "poisoned message" in parked.json()["detail"]
    assert after.json()["text"] == "re: still here"
    rows = await cluster.sql("SELECT status, tries, error FROM cluster_messages ORDER BY room_seq")
    assert rows[0][:2] == ("parked", 3) and "poisoned message" in rows[0][2]
    assert rows[1][:2] == ("done", 1)
    assert status["parked"] == 1 and status["done"] == 1 and status["queue_depth"] == 0
    assert status["recent_parked"][0]["error"] == rows[0][2]
    members = {m["id"]: m for m in status["members"]}
    assert members["w1"]["failed"] == 3 and members["w1"]["processed"] == 1
    assert members["w1"]["alive"] and members["api"]["alive"]
    # nothing of the parked message was written
    assert await room_lines(cluster, room) == ["still here", "re: still here"]


async def test_a_streamed_reply_comes_in_chunks_from_the_worker(cluster: LocalCluster) -> None:
    cluster.spawn("w1", "worker")
    cluster.spawn("api", "api")
    await cluster.wait_workers("w1")
    events: list[tuple[str, str]] = []
    async with (
        httpx.AsyncClient(base_url=cluster.api_url, timeout=180) as client,
        client.stream(
            "POST",
            f"/agents/{AGENT}/messages/stream",
            json={"text": "tell me a long story please", "room_id": str(uuid4())},
        ) as response,
    ):
        kind = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((kind, line.split(":", 1)[1].strip()))
    chunks = [json.loads(data)["text"] for kind, data in events if kind == "chunk"]
    [reply] = [json.loads(data) for kind, data in events if kind == "reply"]
    assert len(chunks) > 1  # word by word from the worker, through NATS
    assert "".join(chunks) == reply["text"] == "re: tell me a long story please"


async def test_without_nats_replies_come_by_polling_and_after_its_restart_events_travel_again(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    port = free_port()
    nats = start_nats(port)
    cluster.nats = f"nats://127.0.0.1:{port}"
    seen = tmp_path / "events.txt"
    cluster.env["CLUSTER_PROBE_EVENTS"] = str(seen)
    try:
        cluster.spawn("w1", "worker")
        api = cluster.spawn("api", "api")
        await cluster.wait_workers("w1")
        room = str(uuid4())
        async with httpx.AsyncClient(base_url=cluster.api_url, timeout=180) as client:
            assert (await send(client, "with nats", room)).json()["text"] == "re: with nats"

            async def noted(text: str) -> bool:
                return seen.exists() and f"{api.pid} re: {text}\n" in seen.read_text()

            await wait_for(lambda: noted("with nats"), "the cluster event in the API process")
            stop_process(nats)
            assert (await client.get("/cluster")).json()["nats"] == "down"
            for i in range(3):  # the worker wakes up by polling, the API polls for the reply
                response = await send(client, f"no nats {i}", room)
                assert response.json()["text"] == f"re: no nats {i}"
            nats = start_nats(port)

            async def back() -> bool:
                return (await client.get("/cluster")).json()["nats"] == "connected"

            await wait_for(back, "the API process to reconnect to NATS", within=20)
            await asyncio.sleep(1.5)  # the worker reconnects too (1 s between tries)
            assert (await send(client, "nats again", room)).json()["text"] == "re: nats again"
            await wait_for(lambda: noted("nats again"), "events flowing again")
            # the events raised while NATS was away were kept in the outbox and sent now
            for i in range(3):
                await wait_for(lambda i=i: noted(f"no nats {i}"), f"event {i} from the outbox")
            await asyncio.sleep(1)  # none sent twice
            notes = seen.read_text().splitlines()
            for text in ("with nats", "no nats 0", "no nats 1", "no nats 2", "nats again"):
                assert notes.count(f"{api.pid} re: {text}") == 1, notes
        lines = await room_lines(cluster, room)
        assert len(lines) == 10 and len(set(lines)) == 10  # nothing lost, nothing doubled
    finally:
        stop_process(nats)


async def test_sigterm_lets_a_worker_finish_its_message_and_release_its_rooms_at_once(
    cluster: LocalCluster,
) -> None:
    cluster.settings["lease"] = 30  # a takeover would take 30 s: the release must be explicit
    cluster.env["CLUSTER_PROBE_HANG"] = "1.5"
    w1 = cluster.spawn("w1", "worker")
    cluster.spawn("api", "api")
    await cluster.wait_workers("w1")
    room = str(uuid4())
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=180) as client:
        first = asyncio.create_task(send(client, "HANG a while", room))

        async def started() -> bool:
            return bool(await cluster.sql("SELECT 1 FROM cluster_messages WHERE tries = 1"))

        await wait_for(started, "w1 to start")
        second = asyncio.create_task(send(client, "next one", room))
        await wait_for(lambda: _count(cluster, 2), "the second message queued")
        cluster.spawn("w2", "worker")
        await cluster.wait_workers("w2")
        w1.send_signal(signal.SIGTERM)
        assert (await first).json()["text"] == "re: HANG a while"  # finished by w1
        assert await asyncio.to_thread(w1.wait, 20) == 0
        stopped = time.monotonic()
        assert (await second).json()["text"] == "re: next one"
        assert time.monotonic() - stopped < 10  # w2 took the room at once, not after the lease
    rows = await cluster.sql("SELECT worker, tries FROM cluster_messages ORDER BY room_seq")
    assert rows[0] == ("w1", 1)
    assert rows[1][1] == 1
    assert (await cluster.sql("SELECT redeliveries FROM cluster_rooms"))[0][0] == 0
    assert "released" in cluster.log("w1")


async def _count(cluster: LocalCluster, n: int) -> bool:
    return (await cluster.sql("SELECT count(*) FROM cluster_messages"))[0][0] == n


async def test_a_member_with_both_roles_answers_and_reports_its_figures(
    cluster: LocalCluster,
) -> None:
    cluster.metrics = True
    cluster.spawn("n1", "both")
    await cluster.wait_workers("n1")
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=180) as client:
        assert (await send(client, "hi", str(uuid4()))).json()["text"] == "re: hi"

        async def sampled() -> bool:
            series = (await client.get("/stats", params={"name": "agenthost.cluster"})).json()
            values = {item["name"]: item.get("value") for item in series}
            return values.get("agenthost.cluster.processed") == 1

        await wait_for(sampled, "the worker's counters in /stats")
        series = (await client.get("/stats", params={"name": "agenthost.cluster"})).json()
        values = {item["name"]: item.get("value") for item in series}
        assert values["agenthost.cluster.nats_connected"] == 1
        assert "agenthost.cluster.rooms_held" in values


async def test_a_fenced_tries_edits_and_cluster_events_are_not_kept(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    seen = tmp_path / "events.txt"
    cluster.env["CLUSTER_PROBE_EVENTS"] = str(seen)
    cluster.env["CLUSTER_PROBE_HANG"] = "1.5"
    w1 = cluster.spawn("w1", "worker")
    w2 = cluster.spawn("w2", "worker")
    api = cluster.spawn("api", "api")
    await cluster.wait_workers("w1", "w2")
    room = str(uuid4())
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=180) as client:
        for text in ("note keep", "note drop"):
            assert (await send(client, text, room)).json()["text"] == f"re: {text}"
        edit = asyncio.create_task(send(client, "EDIT SLOW", room))

        async def slowed() -> bool:
            return seen.exists() and any(
                line.endswith(" slow") for line in seen.read_text().splitlines()
            )

        # the holder made its edits and waits in its MESSAGE_SENT handler, before the commit
        await wait_for(slowed, "a worker in its turn's last step")
        pid = next(int(x.split()[0]) for x in seen.read_text().splitlines() if x.endswith("slow"))
        holder, other = ("w1", "w2") if pid == w1.pid else ("w2", "w1")
        assert pid in (w1.pid, w2.pid)
        lines = await room_lines(cluster, room)
        assert "note keep" in lines and "note drop" in lines  # held back: not in the store yet
        cluster.kill(holder, signal.SIGSTOP)  # past its lease: the other takes the room over
        response = await edit
        assert response.json()["text"] == "re: EDIT SLOW"
        cluster.kill(holder, signal.SIGCONT)  # its turn ends: commit refused, events dropped

        async def refused() -> bool:  # at its commit, or by its lease renewal first
            return any(m in cluster.log(holder) for m in ("nothing committed", "lost room"))

        await wait_for(refused, "the paused worker to find its room taken")
        await asyncio.sleep(1.5)  # its outbox would have been sent by now
    lines = await room_lines(cluster, room)
    assert f"note kept by {other}" in lines and "note keep" not in lines
    assert "note drop" not in lines and f"note kept by {holder}" not in lines
    assert lines.count("re: EDIT SLOW") == 1
    rows = await cluster.sql(
        "SELECT worker, tries, status FROM cluster_messages WHERE room_id = %s ORDER BY room_seq",
        room,
    )
    assert rows[-1] == (other, 2, "done")
    notes = seen.read_text().splitlines()
    assert notes.count(f"{api.pid} re: EDIT SLOW") == 1, notes  # the fenced try's: not sent
