"""What each of the host's metrics measures: its unit and a line of help.

Series are recorded under OpenTelemetry-style names (``gen_ai.client.operation.duration``, unit
metadata apart). Prometheus wants the unit in the name and help text on every family:
`exposition_name` applies the OpenTelemetry-to-Prometheus rules (``.`` becomes ``_``; ``s``
adds ``_seconds``, ``By`` ``_bytes``; annotations such as ``{token}`` add nothing; counters get
``_total`` from the client library), `help_text` the catalogue's line. A metric missing from the
catalogue (a plugin's) keeps its name and has its name as help.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CATALOG", "MetricInfo", "exposition_name", "help_text", "prometheus_name"]

_INVALID = re.compile(r"[^a-zA-Z0-9_:]")


@dataclass(frozen=True, slots=True)
class MetricInfo:
    unit: str
    """UCUM as OpenTelemetry writes it: ``s``, ``By``, ``1``, or an annotation ``{token}``."""
    help: str


def _seconds(text: str) -> MetricInfo:
    return MetricInfo("s", text)


def _count(text: str, what: str = "1") -> MetricInfo:
    return MetricInfo(what, text)


CATALOG: dict[str, MetricInfo] = {
    "gen_ai.client.operation.duration": _seconds("Duration of model calls (GenAI client)."),
    "gen_ai.client.token.usage": _count("Tokens per model call, input and output.", "{token}"),
    "agenthost.model.errors": _count("Model calls that failed.", "{call}"),
    "agenthost.model.fallbacks": _count("Model call attempts after a failure.", "{call}"),
    "agenthost.model.provider_fallbacks": _count(
        "Model calls answered by a fallback provider, by the provider passed over, the model"
        " type and the reason (rate_limited, timeout, model_not_served, circuit_open, ...)",
        "{call}",
    ),
    "agenthost.action.duration": _seconds("Duration of action runs."),
    "agenthost.action.executions": _count("Action runs, by outcome.", "{run}"),
    "agenthost.memory.operation.duration": _seconds("Duration of memory store operations."),
    "agenthost.memory.batch.size": _count("Memories per batch operation.", "{memory}"),
    "agenthost.messages.received": _count("Messages received by agents.", "{message}"),
    "agenthost.messages.processed": _count("Messages processed by agents.", "{message}"),
    "agenthost.pipeline.stage.duration": _seconds("Duration of a message's pipeline stages."),
    "agenthost.events.emitted": _count("Events emitted on the bus.", "{event}"),
    "agenthost.events.handler_failures": _count("Event handlers that failed.", "{failure}"),
    "agenthost.cache.hits": _count("Provider cache hits.", "{hit}"),
    "agenthost.cache.misses": _count("Provider cache misses.", "{miss}"),
    "agenthost.cache.evictions": _count("Provider cache entries evicted for room.", "{entry}"),
    "agenthost.cache.invalidations": _count("Provider cache entries invalidated.", "{entry}"),
    "agenthost.cache.errors": _count("Provider cache errors.", "{error}"),
    "agenthost.cache.expirations": _count("Provider cache entries expired.", "{entry}"),
    "agenthost.cache.saved": _seconds("Seconds of provider calls the cache hits skipped."),
    "agenthost.cache.entries": _count("Provider cache entries held.", "{entry}"),
    "agenthost.cache.size": MetricInfo("By", "Provider cache size."),
    "db.client.connection.count": _count("Database pool connections.", "{connection}"),
    "db.client.connection.idle": _count("Idle database pool connections.", "{connection}"),
    "db.client.connection.used": _count("Database pool connections in use.", "{connection}"),
    "db.client.connection.pending_requests": _count(
        "Requests waiting for a database pool connection.", "{request}"
    ),
    "db.client.connection.max": _count("Most database pool connections.", "{connection}"),
    "agenthost.plugins.reloads": _count("Plugin hot reloads, by outcome.", "{reload}"),
    "agenthost.plugins.reload.duration": _seconds("Duration of plugin hot reloads."),
    "agenthost.plugins.failures": _count("Plugin failures, by stage.", "{failure}"),
    "agenthost.eventstore.appends": _count("Events appended to the audit trail.", "{event}"),
    "agenthost.eventstore.dropped": _count("Events the audit trail dropped.", "{event}"),
    "agenthost.metrics.dropped": _count("Metric series dropped by the guard.", "{series}"),
}

_UNIT_SUFFIXES = {"s": "seconds", "ms": "milliseconds", "By": "bytes"}


def prometheus_name(name: str) -> str:
    """``gen_ai.client.operation.duration`` -> ``gen_ai_client_operation_duration``."""
    cleaned = _INVALID.sub("_", name)
    return cleaned if not cleaned[:1].isdigit() else f"_{cleaned}"


def exposition_name(name: str) -> str:
    """The Prometheus family name of metric `name`: with its unit suffix (``_seconds``)."""
    base = prometheus_name(name)
    info = CATALOG.get(name)
    suffix = _UNIT_SUFFIXES.get(info.unit) if info is not None else None
    if suffix is None or base.endswith(f"_{suffix}"):
        return base
    return f"{base}_{suffix}"


def help_text(name: str) -> str:
    """The help line of metric `name`, naming the recorded name too."""
    info = CATALOG.get(name)
    return f"{info.help} ({name})" if info is not None else name
