"""The plugins page: each plugin's status and last reload, and (in dev mode) reloading one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from .deps import Authed, ConsoleDep

if TYPE_CHECKING:
    from host.app import Host

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


@router.get("/console/plugins")
async def plugins_page(request: Request, console: ConsoleDep, found: Authed) -> HTMLResponse:
    host = console.host
    dev = host.reloader is not None
    return console.render(request, found, "plugins.html", rows=_plugin_rows(host), dev=dev)


@router.post("/console/plugins/{name}/reload")
async def reload(request: Request, console: ConsoleDep, found: Authed, name: str) -> HTMLResponse:
    host = console.host
    if host.reloader is None:
        return console.render(
            request, found, "_problem.html", status=409, problem="Reload needs dev mode."
        )
    if name not in host.loader.loaded and name not in host.reloader.lost:
        return console.render(
            request, found, "_problem.html", status=404, problem=f"No loaded plugin {name}."
        )
    await host.reload_plugin(name)
    row = next(r for r in _plugin_rows(host) if r["name"] == name)
    return console.render(request, found, "_plugin.html", row=row, dev=True, announce=True)


def _plugin_rows(host: Host) -> list[dict[str, Any]]:
    rows = []
    history = host.reloader.history if host.reloader is not None else []
    for status in host.statuses:
        last = next((r for r in reversed(history) if r.name == status.name), None)
        refusal = host.reloader.refusal(status.name) if host.reloader is not None else None
        rows.append({**status.as_dict(), "last_reload": last, "refusal": refusal})
    return rows
