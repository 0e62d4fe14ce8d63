"""Plugin routes: ``GET /plugins`` and ``GET /plugins/{name}`` (what loaded, what failed and
why, while the host keeps serving: a failing plugin is isolated, and reported here), and in dev
mode ``POST /plugins/{name}/reload``. They reach the `Host` through ``app.state.host``."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel

from host.http_deps import get_host
from host.loader import PluginStatus

if TYPE_CHECKING:
    from host.app import Host

__all__ = ["PluginOut", "ReloadOut", "reload_router", "router"]

router = APIRouter(tags=["ops"])
reload_router = APIRouter(tags=["dev"])
"""Mounted in dev mode only."""

HostDep = Annotated["Host", Depends(get_host)]


class ReloadOut(BaseModel):
    """One hot reload (``POST /plugins/{name}/reload``, or the watcher after an edit)."""

    ok: bool
    duration: float
    error: str | None
    reloaded: list[str]
    at: datetime
    """When it finished (UTC)."""


class PluginOut(BaseModel):
    """A plugin as this running host sees it (``agenthost plugins list`` shows the same)."""

    name: str
    version: str | None
    distribution: str | None
    status: str
    """loaded, disabled or failed."""
    error: str | None
    """Why it failed to load (a failed reload is in `last_reload`: the old version serves on)."""
    stage: str | None
    """Where it failed: discover, load, setup, teardown or reload."""
    description: str
    last_reload: ReloadOut | None
    """Its last hot reload in dev mode (None: never reloaded, or not in dev mode)."""


def _out(host: Host, status: PluginStatus) -> PluginOut:
    last = None
    if host.reloader is not None:
        last = next((r for r in reversed(host.reloader.history) if r.name == status.name), None)
    reload = None if last is None else ReloadOut.model_validate(last, from_attributes=True)
    return PluginOut(**status.as_dict(), last_reload=reload)


@router.get("/plugins")
async def list_plugins(host: HostDep) -> list[PluginOut]:
    """Every discovered plugin, by name."""
    return [_out(host, s) for s in host.statuses]


@router.get("/plugins/{name}", responses={404: {"description": "no such plugin"}})
async def get_plugin(host: HostDep, name: str) -> PluginOut:
    status = next((s for s in host.statuses if s.name == name), None)
    if status is None:
        known = ", ".join(s.name for s in host.statuses) or "none"
        raise HTTPException(404, f"no plugin named {name!r} (discovered: {known})")
    return _out(host, status)


@reload_router.post("/plugins/{name}/reload")
async def reload(host: HostDep, name: str) -> dict[str, Any]:
    assert host.reloader is not None  # mounted in dev mode only
    if name not in host.loader.loaded and name not in host.reloader.lost:
        raise HTTPException(404, f"no loaded plugin named {name!r}")
    result = await host.reload_plugin(name)
    return {
        "name": result.name,
        "ok": result.ok,
        "duration": result.duration,
        "error": result.error,
        "reloaded": result.reloaded,
    }
