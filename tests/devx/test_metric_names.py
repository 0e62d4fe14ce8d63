"""Prometheus conventions on a real host's ``/metrics``: durations carry ``_seconds``, counters
``_total``, every family has help text (tests/metrics/ checks the values)."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from host.metrics.catalog import CATALOG, exposition_name, help_text

from .conftest import LiveHost


def test_units_in_names_and_help_on_every_family(live_host: LiveHost) -> None:
    headers = {"X-API-Key": live_host.key}
    with httpx.Client(base_url=live_host.url, headers=headers, timeout=30) as client:
        assert client.post("/agents/eliza/messages", json={"text": "I feel sad"}).status_code == 200
        exposition = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(exposition)}
    assert "gen_ai_client_operation_duration_seconds" in families
    assert "agenthost_pipeline_stage_duration_seconds" in families
    assert not [name for name in families if name.endswith("_duration")]
    for family in families.values():
        assert family.documentation and family.documentation != family.name, family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
    duration = families["gen_ai_client_operation_duration_seconds"]
    assert duration.documentation == help_text("gen_ai.client.operation.duration")
    assert duration.documentation.startswith("Duration of model calls")


def test_every_catalogued_time_is_in_seconds() -> None:
    for name, info in CATALOG.items():
        if info.unit == "s":
            assert exposition_name(name).endswith("_seconds"), name
    assert exposition_name("agenthost.cache.size") == "agenthost_cache_size_bytes"
    assert exposition_name("gen_ai.client.token.usage") == "gen_ai_client_token_usage"
    assert exposition_name("my_plugin.thing") == "my_plugin_thing"  # not catalogued: as named
