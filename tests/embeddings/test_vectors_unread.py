"""Issue 20, target 2: vectors are never read where nothing uses them. A real host (SQLite
file, recall, knowledge, the host's embeddings, HTTP and the console on 127.0.0.1) is driven
over HTTP while two things are watched: each statement its SQLite connections run (a trace on
every ``sqlite3.connect``), for those reading memory rows with their ``embedding`` column, and
each stored vector the store decodes into a memory (`builtin_plugins.sqlite.rows` decodes
them all through one function, `_vector`). The recall and knowledge providers' searches, the
knowledge base's reads (adding, replacing, listing, searching and removing documents), the
console's memories page (a page, and a search) and its chat history, and the API's pages of
memories and its deletion of a room's memories read and decode none; asked for
(``embeddings=true``), the page reads them and decodes each, so both watches are live."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from builtin_plugins.sqlite import rows

from .helpers import config, echo_host

DOG = (
    "Greyhounds adopted from the kennel move in after a home visit. The visit is booked within"
    " three to five weeks of the application. Adopters walk the dog twice on the kennel's"
    " grounds first."
)


SELECTED = re.compile(r"\s*SELECT (.*?) FROM memories\b", re.S)


class VectorReads:
    """The statements reading memory rows with their vectors (`statements`) and the vectors
    decoded (`decoded`). Not counted: a row read by its id (``get_memory`` has no way to leave
    its vector) and the vectors read into an index (a search uses them)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.decoded = 0
        self.statements: list[str] = []
        decode, connect = rows._vector, sqlite3.connect

        def counted(blob: Any) -> Any:
            self.decoded += 1
            return decode(blob)

        def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn: sqlite3.Connection = connect(*args, **kwargs)
            conn.set_trace_callback(self._saw)
            return conn

        monkeypatch.setattr(rows, "_vector", counted)
        monkeypatch.setattr(sqlite3, "connect", traced)

    def _saw(self, sql: str) -> None:
        selected = SELECTED.match(sql)
        if selected is None or not selected[1].startswith("seq, id, table_name"):
            return  # not memory rows: an index's vectors, a count, a history's texts
        if "embedding" in selected[1] and " WHERE id = " not in sql:
            self.statements.append(sql)

    async def none_in(self, what: str, call: Callable[[], Awaitable[httpx.Response]]) -> str:
        """`call`'s response text (a success), checking that it read and decoded no vector."""
        decoded, statements = self.decoded, len(self.statements)
        response = await call()
        assert response.status_code == 200, (what, response.status_code, response.text)
        assert self.statements[statements:] == [], f"{what} read vectors"
        assert self.decoded == decoded, f"{what} decoded {self.decoded - decoded} vectors"
        return response.text


async def test_recall_knowledge_and_the_console_decode_no_vector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = config(
        tmp_path,
        ["sqlite", "eliza", "recall", "knowledge"],  # the host's own (hashed) embeddings
        knowledge={"threshold": 0.0},
        recall={"threshold": 0.0},
    )
    watch = VectorReads(monkeypatch)
    async with echo_host(loaded, http=True) as host:
        assert host.http is not None
        async with httpx.AsyncClient(base_url=host.http.url, timeout=60) as client:
            dog = {"source": "dogs.md", "text": DOG}
            await watch.none_in("adding a document", lambda: client.post("/knowledge", json=dog))
            dog["text"] = DOG + " Cats are not rehomed here."
            await watch.none_in("replacing it", lambda: client.post("/knowledge", json=dog))
            rooms = [str(uuid4()) for _ in range(3)]
            room = rooms[2]  # the one the pages show; the others are recalled from it
            said = {
                "My greyhound sleeps on the sofa.": rooms[0],
                "The kennel booked a home visit.": rooms[1],
                "I walked a greyhound on the kennel grounds.": room,
                "How many weeks until the greyhound moves in?": room,
            }
            for text, in_room in said.items():
                body = {"text": text, "user": "sam", "room_id": in_room}
                reply = await watch.none_in(
                    f"a message ({text!r})",
                    lambda body=body: client.post("/agents/eliza/messages", json=body),  # type: ignore[misc]
                )
            # the providers did search (the echoed prompt holds what they found)
            texts = list(said)
            recalled = reply.split("# Relevant memories", 1)[-1]
            assert "# Relevant memories" in reply and texts[0] in recalled
            assert "# Knowledge" in reply and "three to five weeks" in reply
            listed = await watch.none_in("the documents", lambda: client.get("/knowledge"))
            assert "dogs.md" in listed
            found = await watch.none_in(
                "a knowledge search",
                lambda: client.get("/knowledge/search", params={"q": "greyhound home visit"}),
            )
            assert "three to five" in found
            pick = {"agent": "Eliza", "room": room}
            page = await watch.none_in(
                "the console's memories page", lambda: client.get("/console/memories", params=pick)
            )
            assert texts[2] in page and texts[3] in page
            hits = await watch.none_in(
                "the console's memories search",
                lambda: client.get(
                    "/console/memories", params={**pick, "q": "walked on the grounds"}
                ),
            )
            assert "Nearest to" in hits and "similarity" in hits and texts[2] in hits
            chat = await watch.none_in(
                "the console's chat history", lambda: client.get("/console/chat", params=pick)
            )
            assert texts[2] in chat and texts[3] in chat
            url = f"/agents/eliza/rooms/{room}/memories"
            plain = await watch.none_in("a page of memories", lambda: client.get(url))
            assert texts[3] in plain
            await watch.none_in(
                "removing the document",
                lambda: client.delete("/knowledge", params={"source": "dogs.md"}),
            )
            other = f"/agents/eliza/rooms/{rooms[1]}/memories"
            deleted = await watch.none_in("deleting a room", lambda: client.delete(other))
            assert '"deleted":2' in deleted.replace(" ", "")
            # asked for, vectors are read and decoded, one a memory of the page (both watches
            # are live)
            decoded, statements = watch.decoded, len(watch.statements)
            full = await client.get(url, params={"embeddings": "true"})
            items = full.json()["items"]
            assert len(items) == 4 and all(item["embedding"] for item in items)
            assert (watch.decoded - decoded, len(watch.statements) - statements) == (4, 1)
