"""HTTP routes over the host's metrics: ``/metrics`` (Prometheus text) and ``/stats`` (JSON).

The host mounts this router behind its API key check; ``agenthost stats`` reads ``/stats``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from host.metrics.exposition import CONTENT_TYPE
from host.metrics.telemetry import Telemetry

__all__ = ["router", "telemetry_of"]


router = APIRouter(tags=["ops"])
"""Reads the host's `Telemetry` from ``app.state.telemetry``."""


async def telemetry_of(request: Request) -> Telemetry:
    telemetry: Telemetry = request.app.state.telemetry
    return telemetry


Figures = Annotated[Telemetry, Depends(telemetry_of)]


@router.get("/metrics", response_class=Response)
def prometheus_metrics(telemetry: Figures) -> Response:
    """Every metric in the Prometheus text exposition format."""
    try:
        body = telemetry.exposition()
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from exc
    return Response(body, media_type=CONTENT_TYPE)


@router.get("/stats")
def stats(telemetry: Figures, name: str | None = None) -> list[dict[str, Any]]:
    """Every series of the in-memory collector (those whose name contains `name`)."""
    return [s for s in telemetry.snapshot() if name is None or name in s["name"]]
