"""The bus in a running host: shutdown lets detached handlers finish before plugins go."""

from __future__ import annotations

import asyncio
from pathlib import Path
from uuid import uuid4

from contracts.events import AGENT_STOPPED, HANDLER_FAILED, AgentPayload, HandlerFailedPayload
from host.app import Host
from host.testing import offline_config


async def test_stop_drains_detached_handlers_while_their_plugins_still_serve(
    tmp_path: Path,
) -> None:
    """A detached agent:stopped handler still reading the store when the host stops: the store
    plugin is torn down only after the handler finished."""
    host = Host(offline_config(tmp_path))
    await host.start()
    assert host.agents is not None
    eliza = host.agents.get("eliza")
    room = uuid4()
    await eliza.save_memory(eliza.new_message("remember me", room_id=room, entity_id=uuid4()))
    read: list[int] = []
    failures: list[HandlerFailedPayload] = []

    async def summarise(payload: AgentPayload) -> None:
        await asyncio.sleep(0.05)  # still running when stop() goes on to the plugins
        read.append(len(await eliza.recent_memories(room)))

    host.events.on(AGENT_STOPPED, summarise, owner="summary", detached=True)
    host.events.on(HANDLER_FAILED, failures.append)
    await host.stop()
    assert failures == [] and read == [1]
    assert host.events.pending == 0
