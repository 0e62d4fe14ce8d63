"""A running host exposes its metrics: Prometheus text a real parser reads back with the expected
names and labels after traffic, and `agenthost stats` prints them from the HTTP API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from uuid import uuid4

import httpx
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from contracts.config import HttpSettings
from host.app import Host
from host.cli import app
from host.testing import offline_config


async def test_metrics_after_traffic_and_stats_cli(tmp_path: Path) -> None:
    host = Host(offline_config(tmp_path, "audit", http=HttpSettings(port=0)))
    await host.start(http=True)
    try:
        assert host.http is not None
        async with httpx.AsyncClient(base_url=host.http.url) as client:
            for text in ("I feel sad", "My mother hates me"):
                response = await client.post(
                    "/agents/eliza/messages", json={"text": text, "room_id": str(uuid4())}
                )
                assert response.status_code == 200
            await host.loader.loaded["audit"].instance.flush()  # type: ignore[attr-defined]
            exposition = (await client.get("/metrics")).text
        families = {f.name: f for f in text_string_to_metric_families(exposition)}
        model_type = "agenthost_model_type"
        duration = families["gen_ai_client_operation_duration_seconds"]
        labels = {
            (s.labels["gen_ai_operation_name"], s.labels["gen_ai_system"], s.labels[model_type])
            for s in duration.samples
        }
        assert ("chat", "eliza", "text_large") in labels
        assert ("embeddings", "eliza", "text_embedding") in labels
        stages = families["agenthost_pipeline_stage_duration_seconds"]
        assert {s.labels["stage"] for s in stages.samples} >= {"memory", "model", "total"}
        memory_ops = families["agenthost_memory_operation_duration_seconds"]
        assert any(
            s.labels == {"backend": "sqlite", "operation": "create", "outcome": "ok"}
            and s.name.endswith("_count")
            and s.value == 4
            for s in memory_ops.samples
        )
        appends = families["agenthost_eventstore_appends"].samples
        assert sum(s.value for s in appends if s.name.endswith("_total")) > 10
        emitted = families["agenthost_events_emitted"]
        received = [s for s in emitted.samples if s.labels.get("event") == "message:received"]
        assert received and received[0].value == 2
        assert all("room" not in key for s in emitted.samples for key in s.labels)

        # the CLI blocks on HTTP: run it off the loop that serves the request
        args = ["stats", "--url", host.http.url, "--name", "gen_ai"]
        result = await asyncio.to_thread(CliRunner().invoke, app, args)
        assert result.exit_code == 0, result.output
        # piped (CliRunner is no terminal): plain columns, one line per series, nothing wrapped
        header, *rows = result.output.splitlines()
        assert header.split() == [
            "metric",
            "tags",
            "count",
            "/",
            "value",
            "mean",
            "p50",
            "p95",
            "max",
        ]
        assert rows and all("│" not in row and "─" not in row for row in rows)
        assert any(
            row.startswith("gen_ai.client.operation.duration ") and "gen_ai.system=eliza" in row
            for row in rows
        ), result.output
        as_json = await asyncio.to_thread(CliRunner().invoke, app, [*args, "--json"])
        series = json.loads(as_json.output)
        assert {s["name"] for s in series} == {
            "gen_ai.client.operation.duration",
            "gen_ai.client.token.usage",
        }
        large = [s for s in series if s["tags"].get("agenthost.model.type") == "text_large"]
        assert large and large[0]["count"] == 2
    finally:
        await host.stop()
