"""kill -9 of a whole host (``agenthost run``: SQLite, ELIZA, recall, knowledge, the audit
trail, HTTP on 127.0.0.1) while a client sends one room's messages one at a time, each reply
awaited: one room's writes, each committed on the caller's thread while the worker is idle (by
the lone branch, or as a group of one after a loop turn: here mostly the latter). Killed at a
random moment, three times over one data dir, the host leaves every message it answered stored
with its reply; the room's messages are stored in the order they were sent, with no gap; and
the host starts again on what it left."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from uuid import UUID, uuid4

import httpx

from builtin_plugins.sqlite import SqliteAdapter
from contracts.memory import MemoryQuery

ROOT = Path(__file__).resolve().parents[2]
KILLS = 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    config = root / "agenthost.yaml"
    config.write_text(
        f"data_dir: {root / 'data'}\n"
        f"http: {{host: 127.0.0.1, port: {port}}}\n"
        f"agents: {{characters_dir: {root / 'none'}}}\n"
        "plugins: {enabled: [sqlite, eliza, recall, knowledge, audit]}\n"
        "logging: {level: WARNING}\n"
    )
    log = (root / "host.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-c", "from host.cli import main; main()", "run"],
        env={**os.environ, "AGENTHOST_CONFIG": str(config)},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the host did not start:\n{(root / 'host.log').read_text()}")
        time.sleep(0.05)


def _send(url: str, room: str, first: int, answered: list[tuple[int, UUID, UUID]]) -> None:
    """Messages ``first``, ``first + 1``... to `room`, one at a time, until the host is gone;
    each answered one noted (its number, its id and its reply's)."""
    with httpx.Client(base_url=url, timeout=30) as client:
        n = first
        while True:
            body = {"text": f"message {n}", "user": "sam", "room_id": room}
            try:
                response = client.post("/agents/eliza/messages", json=body)
            except httpx.TransportError:
                return  # killed
            assert response.status_code == 200, response.text
            reply = response.json()
            answered.append((n, UUID(reply["message_id"]), UUID(reply["reply"]["id"])))
            n += 1


def _run_until_killed(
    root: Path, room: str, first: int, answered: list[tuple[int, UUID, UUID]], wait: float
) -> None:
    """Start the host and the sender; once a few messages are answered, `wait` seconds more,
    then kill the host (SIGKILL)."""
    process, url = _start(root)
    try:
        before = len(answered)
        sender = threading.Thread(target=_send, args=(url, room, first, answered))
        sender.start()
        deadline = time.monotonic() + 30
        while len(answered) < before + 5:
            assert time.monotonic() < deadline and sender.is_alive(), "no answer"
            time.sleep(0.01)
        time.sleep(wait)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        sender.join(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_a_host_killed_mid_conversation_keeps_every_answered_message(
    tmp_path: Path,
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    room = str(uuid4())
    answered: list[tuple[int, UUID, UUID]] = []
    sent = 0
    for _kill in range(KILLS):
        wait = rng.uniform(0.0, 0.5)
        await asyncio.to_thread(_run_until_killed, tmp_path, room, sent, answered, wait)
        db = await SqliteAdapter.open(tmp_path / "data" / "agenthost.sqlite3")
        try:
            rows = await db.get_memories(
                MemoryQuery(room_id=UUID(room), order="asc", with_embeddings=False)
            )
        finally:
            await db.close()
        stored = {m.id for m in rows}
        lost = [n for n, message, reply in answered if not {message, reply} <= stored]
        assert not lost, f"seed {seed}: answered messages {lost} lost"
        said = [m.content.text for m in rows if m.entity_id != m.agent_id]
        # in the order sent, none missing (the last one may have been cut before its reply)
        assert said == [f"message {n}" for n in range(len(said))], f"seed {seed}"
        sent = len(said)
    assert len(answered) >= 5 * KILLS
