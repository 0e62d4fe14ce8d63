"""Memory input limits at the API, through a real host (ELIZA + SQLite, HTTP on 127.0.0.1).

Before the limits, ``metadata`` nested ~201-250 deep was accepted and stored but could never be
read back (the room's memory listing was a 500 on every call, later messages lost their
history) and ~260+ deep was a 500. Now metadata nested past `MAX_JSON_DEPTH`, or longer than
`MAX_JSON_LENGTH` as JSON, is a 422 naming the field, nothing is written, and the room stays
readable whatever was sent to it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.memory import MAX_JSON_DEPTH, MAX_JSON_LENGTH
from host.testing import OfflineHosts


def nested_text(depth: int) -> str:
    """JSON text of a value `depth` objects deep (built as text: no encoder recursion)."""
    return '{"a":' * depth + '"x"' + "}" * depth


@pytest.fixture
async def client(offline_host: OfflineHosts) -> AsyncIterator[httpx.AsyncClient]:
    http = {"port": 0, "max_body_bytes": 4 * MAX_JSON_LENGTH}
    host = await offline_host(serve=True, http=http)
    assert host.http is not None
    async with httpx.AsyncClient(base_url=host.http.url, timeout=60) as client:
        yield client


async def send(client: httpx.AsyncClient, room: str, metadata_text: str) -> httpx.Response:
    body = f'{{"text":"I feel sad","room_id":"{room}","metadata":{metadata_text}}}'
    headers = {"content-type": "application/json"}
    return await client.post("/agents/eliza/messages", content=body, headers=headers)


async def test_metadata_past_the_depth_limit_is_a_422_and_the_room_stays_readable(
    client: httpx.AsyncClient,
) -> None:
    room = str(uuid4())
    # the deepest metadata a memory may hold: {"m": ...} is one level
    ok = await send(client, room, '{"m":' + nested_text(MAX_JSON_DEPTH - 1) + "}")
    assert ok.status_code == 200, ok.text
    for depth in (MAX_JSON_DEPTH, 210, 250, 270, 900):
        refused = await send(client, room, '{"m":' + nested_text(depth) + "}")
        assert refused.status_code == 422, (depth, refused.text[:300])
        (error,) = refused.json()["detail"]
        assert error["loc"] == ["body", "metadata"]
        assert f"metadata is nested deeper than {MAX_JSON_DEPTH} levels" in error["msg"]
    # past what the JSON parser takes at all: a 400, never a 500
    unparsable = await send(client, room, '{"m":' + nested_text(5000) + "}")
    assert unparsable.status_code in (400, 422), unparsable.text[:300]

    listing = await client.get(f"/agents/eliza/rooms/{room}/memories", params={"limit": 50})
    assert listing.status_code == 200, listing.text[:300]
    items = listing.json()["items"]
    assert len(items) == 2  # the accepted message and its reply: nothing of the refused ones
    again = await send(client, room, "{}")
    assert again.status_code == 200
    listing = await client.get(f"/agents/eliza/rooms/{room}/memories")
    assert listing.status_code == 200 and len(listing.json()["items"]) == 4


async def test_metadata_longer_than_the_limit_is_a_422(client: httpx.AsyncClient) -> None:
    room = str(uuid4())
    long = json.dumps({"blob": "x" * MAX_JSON_LENGTH})
    refused = await send(client, room, long)
    assert refused.status_code == 422, refused.text[:300]
    (error,) = refused.json()["detail"]
    assert error["loc"] == ["body", "metadata"]
    assert "characters as JSON, over the limit" in error["msg"]
    # just under the metadata limit, the stored content (text, name, source besides) is over
    # it: the store refuses it, and the API says so, naming the field, still not a 500
    edge = json.dumps({"blob": "x" * (MAX_JSON_LENGTH - 20)})
    refused = await send(client, room, edge)
    assert refused.status_code == 422, refused.text[:300]
    assert "content" in refused.text and "over the limit" in refused.text
    listing = await client.get(f"/agents/eliza/rooms/{room}/memories")
    assert listing.status_code == 200 and listing.json()["items"] == []


@st.composite
def metadata_values(draw: st.DrawFn) -> Any:
    """Metadata around the depth limit: a chain of dicts and lists with siblings, some far past
    it (up to 400 levels), under keys the API lets a client set."""
    depth = draw(st.one_of(st.integers(0, MAX_JSON_DEPTH + 2), st.integers(0, 400)))
    value: Any = draw(st.none() | st.booleans() | st.integers() | st.text(max_size=6))
    for _ in range(depth):
        if draw(st.booleans()):
            value = {draw(st.text(max_size=3)): value, "s": draw(st.integers(0, 9))}
        else:
            value = [value, draw(st.text(max_size=3))]
    return {draw(st.sampled_from(["channel_type", "x", "é"])): value}


ROOM = str(uuid4())


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(metadata=metadata_values())
async def test_no_message_makes_its_room_unreadable(
    client: httpx.AsyncClient, metadata: Any
) -> None:
    """Whatever the API accepts reads back: every message is a 200 or a 422 naming the field,
    and the one room they all go to always lists (and answers the next message)."""
    response = await send(client, ROOM, json.dumps(metadata))
    assert response.status_code in (200, 422), response.text[:300]
    if response.status_code == 422:
        assert response.json()["detail"][0]["loc"] == ["body", "metadata"]
    listing = await client.get(f"/agents/eliza/rooms/{ROOM}/memories", params={"limit": 500})
    assert listing.status_code == 200, listing.text[:300]
    accepted = response.status_code == 200
    if accepted:
        assert any(item["content"].get("text") == "I feel sad" for item in listing.json()["items"])
