"""The metrics page and the fragment that refreshes it (figures from the host's telemetry,
with the console's own short history for the sparklines)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from .charts import figures
from .deps import Authed, ConsoleDep

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


@router.get("/console/metrics")
async def metrics_page(request: Request, console: ConsoleDep, found: Authed) -> HTMLResponse:
    data = figures(console.host.telemetry.memory, console.history)
    return console.render(request, found, "metrics.html", f=data)


@router.get("/console/fragments/metrics")
async def metrics_fragment(request: Request, console: ConsoleDep, found: Authed) -> HTMLResponse:
    data = figures(console.host.telemetry.memory, console.history)
    return console.render(request, found, "_metrics.html", f=data)
