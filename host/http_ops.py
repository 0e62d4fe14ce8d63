"""Operations routes: ``GET /health`` (liveness, open: never needs the API key) and
``GET /ready`` (503 until an agent runs and its store answers)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException

from contracts.memory import MemoryQuery
from host.http_deps import Agents, ErrorOut
from host.secrets import scrub

__all__ = ["open_router", "router"]

open_router = APIRouter(tags=["ops"])
"""Mounted without the API key check."""

router = APIRouter(tags=["ops"])


@open_router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"model": ErrorOut}})
async def ready(agents: Agents) -> dict[str, Any]:
    """Readiness: at least one agent runs and its store answers."""
    running = agents.running
    if not running:
        raise HTTPException(503, detail="no agent is running")
    try:
        async with asyncio.timeout(5):
            await running[0].database.count_memories(MemoryQuery(limit=0))
    except Exception as exc:
        raise HTTPException(503, detail=f"memory store not ready: {scrub(str(exc))}") from exc
    return {"status": "ready", "agents": [r.name for r in running]}
