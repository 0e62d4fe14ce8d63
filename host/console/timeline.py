"""The timeline page: what happened in a room, from the event store, a page at a time and
filtered by event type, and replaying the room's conversation against the current agent."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from loguru import logger

from host.runtime import agent_id_for

from .deps import Authed, ConsoleDep, LatestRoom, recorded
from .inputs import version_after
from .records import EVENT_TYPES, event_store, flush_trail, replay_room, room_timeline, summarize

__all__ = ["router"]

_log = logger.bind(component="console")
router = APIRouter(include_in_schema=False)


@router.get("/console/timeline")
async def timeline_page(
    request: Request,
    console: ConsoleDep,
    found: Authed,
    picked: LatestRoom,
    type: str = "",
    after: str = "",
) -> HTMLResponse:
    runtime, room_id = picked.runtime, picked.room
    store = await event_store(console.host)
    page = problem = None
    version = version_after(after)
    if version is None:
        version, problem = 0, "That page link is broken (after: no version); first page shown."
    if store is not None and runtime is not None and room_id is not None:
        await flush_trail(console.host)
        types = {type} if type in EVENT_TYPES else None
        page = await room_timeline(store, runtime.agent_id, room_id, types=types, after=version)
    return console.render(
        request,
        found,
        "timeline.html",
        runtime=runtime,
        room=room_id,
        **picked.context,
        types=EVENT_TYPES,
        type=type,
        page=page,
        after=version,
        problem=problem,
        no_store=store is None,
        dumps=_dumps,
        summary=summarize,
    )


@router.post("/console/agents/{agent}/rooms/{room_id}/replay")
async def replay(
    request: Request, console: ConsoleDep, found: Authed, agent: str, room_id: str
) -> HTMLResponse:
    target = await recorded(console, request, found, agent, "room", room_id)
    if isinstance(target, HTMLResponse):
        return target
    try:
        report = await replay_room(
            console.host, target.store, agent_id_for(target.name), target.ref
        )
    except Exception as exc:
        _log.opt(exception=exc).warning("replay failed: {}", exc)
        return console.render(
            request, found, "_problem.html", problem=console.why("The replay failed", exc)
        )
    return console.render(request, found, "_replay.html", report=report)


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=1, ensure_ascii=False, sort_keys=True)[:4000]
