"""HTTP routes over the host's metrics: ``/metrics`` (Prometheus text) and ``/stats`` (JSON).

The HTTP API mounts this router behind its API key check; ``agenthost stats`` reads ``/stats``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response

from host.metrics.exposition import CONTENT_TYPE
from host.metrics.telemetry import Telemetry

__all__ = ["metrics_router"]


def metrics_router(telemetry: Telemetry) -> APIRouter:
    """Routes serving `telemetry`'s current figures."""
    router = APIRouter(tags=["ops"])

    @router.get("/metrics", response_class=Response)
    def prometheus_metrics() -> Response:
        """Every metric in the Prometheus text exposition format."""
        try:
            body = telemetry.exposition()
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from exc
        return Response(body, media_type=CONTENT_TYPE)

    @router.get("/stats")
    def stats(name: str | None = None) -> list[dict[str, Any]]:
        """Every series of the in-memory collector (those whose name contains `name`)."""
        return [s for s in telemetry.snapshot() if name is None or name in s["name"]]

    return router
