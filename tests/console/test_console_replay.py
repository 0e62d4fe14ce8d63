"""The console's "Replay this room" on a running host (real HTTP on 127.0.0.1, SQLite, the
audit trail, recall and knowledge): a conversation over the API with a document added and a
memory deleted midway, in two rooms of one user, replays as recorded, room by room; the host's
own plugins still serve afterwards (the replay's copies of them were its own)."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import httpx
from eventstore.replay_talk import PLUGINS, SETTINGS
from eventstore.replay_talk import TEXTS as TALK
from pydantic import SecretStr

from contracts.config import AgentsSettings, HttpSettings
from host.app import Host
from host.testing import offline_config

KEY = "replay-console-key"
TEXTS = [*TALK, "yes", "yes"]


async def test_replay_this_room_matches_on_a_running_host(tmp_path: Path) -> None:
    config = offline_config(
        tmp_path / "data",
        *PLUGINS,
        http=HttpSettings(port=0, api_key=SecretStr(KEY)),
        agents=AgentsSettings(characters_dir=tmp_path / "none", history=2),
        plugins=SETTINGS,
    )
    host = Host(config)
    await host.start(http=True)
    try:
        assert host.http is not None
        headers = {"X-API-Key": KEY}
        rooms, user = (str(uuid4()), str(uuid4())), str(uuid4())
        async with httpx.AsyncClient(base_url=host.http.url, headers=headers, timeout=30) as api:
            for i, text in enumerate(TEXTS):
                if i == 3:
                    added = await api.post(
                        "/knowledge",
                        json={"source": "hours.md", "text": "The office opens at nine."},
                    )
                    assert added.status_code == 200, added.text
                body = {"text": text, "room_id": rooms[i % 2], "entity_id": user}
                sent = await api.post("/agents/Eliza/messages", json=body)
                assert sent.status_code == 200, sent.text
                if i == 5:
                    gone = await api.delete(f"/agents/Eliza/memories/{sent.json()['reply']['id']}")
                    assert gone.status_code == 200 and gone.json() == {"deleted": 1}, gone.text
            for room, count in zip(rooms, (5, 4), strict=True):
                page = await api.post(f"/console/agents/Eliza/rooms/{room}/replay")
                assert page.status_code == 200
                assert "Replay matches the recording" in page.text, page.text
                assert f"{count} message(s) replayed" in page.text
            after = await api.post(
                "/agents/Eliza/messages", json={"text": "My job", "room_id": rooms[0]}
            )
            assert after.status_code == 200, after.text
        assert host.agents is not None
        state = await host.agents.get("Eliza").compose_state(
            host.agents.get("Eliza").new_message("My job", room_id=uuid4(), entity_id=uuid4())
        )
        assert "# Knowledge" in state.text  # the host's own knowledge plugin, still there
    finally:
        await host.stop()
