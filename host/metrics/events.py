"""`EventMetrics`: the runtime's metrics, derived from the events it already emits.

Subscribed with ``bus.on_any``, it turns each event into counters and histograms, so the
runtime, the model registry and the loader record metrics without calling a collector, and a
plugin's actions and models are measured without their authors doing anything. Model metrics
use the OpenTelemetry GenAI names (``gen_ai.client.operation.duration``,
``gen_ai.client.token.usage``); tags are bounded sets (event, action, provider, stage), never
user data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contracts.events import (
    ACTION_COMPLETED,
    HANDLER_FAILED,
    MESSAGE_RECEIVED,
    MESSAGE_SENT,
    MODEL_USED,
    PLUGIN_FAILED,
    PLUGIN_RELOADED,
    ActionCompletedPayload,
    Event,
    EventPayload,
    HandlerFailedPayload,
    MessagePayload,
    ModelUsedPayload,
    PluginFailedPayload,
    PluginReloadedPayload,
)
from contracts.metrics import MetricsCollector

__all__ = [
    "ACTION_DURATION",
    "ACTION_EXECUTIONS",
    "EVENTS_EMITTED",
    "HANDLER_FAILURES",
    "MESSAGES_PROCESSED",
    "MESSAGES_RECEIVED",
    "MODEL_DURATION",
    "MODEL_ERRORS",
    "MODEL_FALLBACKS",
    "MODEL_TOKENS",
    "PLUGIN_FAILURES",
    "RELOADS",
    "RELOAD_DURATION",
    "STAGE_DURATION",
    "EventMetrics",
]

EVENTS_EMITTED = "agenthost.events.emitted"
"""Counted by the bus itself and sampled (`host.metrics.sampler.bus_source`): no per-emit cost."""
MESSAGES_RECEIVED = "agenthost.messages.received"
MESSAGES_PROCESSED = "agenthost.messages.processed"
STAGE_DURATION = "agenthost.pipeline.stage.duration"
ACTION_DURATION = "agenthost.action.duration"
ACTION_EXECUTIONS = "agenthost.action.executions"
MODEL_DURATION = "gen_ai.client.operation.duration"
MODEL_TOKENS = "gen_ai.client.token.usage"
MODEL_ERRORS = "agenthost.model.errors"
MODEL_FALLBACKS = "agenthost.model.fallbacks"
HANDLER_FAILURES = "agenthost.events.handler_failures"
PLUGIN_FAILURES = "agenthost.plugins.failures"
RELOADS = "agenthost.plugins.reloads"
RELOAD_DURATION = "agenthost.plugins.reload.duration"


class EventMetrics:
    """An `on_any` handler recording metrics for the events it knows."""

    def __init__(self, metrics: MetricsCollector) -> None:
        self.metrics = metrics
        self._recorders: dict[str, Callable[[Any], None]] = {
            MESSAGE_RECEIVED.name: self._received,
            MESSAGE_SENT.name: self._sent,
            ACTION_COMPLETED.name: self._action,
            MODEL_USED.name: self._model,
            HANDLER_FAILED.name: self._handler_failed,
            PLUGIN_RELOADED.name: self._reloaded,
            PLUGIN_FAILED.name: self._plugin_failed,
        }

    def __call__(self, event: Event[Any], payload: EventPayload) -> None:
        recorder = self._recorders.get(event.name)
        if recorder is not None:
            recorder(payload)

    def _received(self, payload: MessagePayload) -> None:
        self.metrics.increment_counter(MESSAGES_RECEIVED, 1, {"agent_id": str(payload.agent_id)})

    def _sent(self, payload: MessagePayload) -> None:
        self.metrics.increment_counter(MESSAGES_PROCESSED, 1, {"agent_id": str(payload.agent_id)})
        for stage, seconds in payload.timings.items():
            self.metrics.record_histogram(STAGE_DURATION, seconds, {"stage": stage})

    def _action(self, payload: ActionCompletedPayload) -> None:
        tags = {
            "action": payload.action,
            "plugin": payload.plugin or "",
            "success": "true" if payload.success else "false",
        }
        self.metrics.record_histogram(ACTION_DURATION, payload.duration, tags)
        self.metrics.increment_counter(ACTION_EXECUTIONS, 1, tags)

    def _model(self, payload: ModelUsedPayload) -> None:
        tags = {"gen_ai.operation.name": payload.model_type, "gen_ai.system": payload.provider}
        if payload.error is not None:
            error_tags = {**tags, "error.type": _error_type(payload.error)}
            self.metrics.record_histogram(MODEL_DURATION, payload.duration, error_tags)
            self.metrics.increment_counter(MODEL_ERRORS, 1, error_tags)
        else:
            self.metrics.record_histogram(MODEL_DURATION, payload.duration, tags)
        if payload.fallback:
            self.metrics.increment_counter(MODEL_FALLBACKS, 1, tags)
        for kind, count in (("input", payload.input_tokens), ("output", payload.output_tokens)):
            if count is not None:
                self.metrics.record_histogram(
                    MODEL_TOKENS, count, {**tags, "gen_ai.token.type": kind}
                )

    def _handler_failed(self, payload: HandlerFailedPayload) -> None:
        tags = {"event": payload.event, "plugin": payload.plugin or ""}
        self.metrics.increment_counter(HANDLER_FAILURES, 1, tags)

    def _reloaded(self, payload: PluginReloadedPayload) -> None:
        self.metrics.increment_counter(RELOADS, 1, {"plugin": payload.name, "outcome": "ok"})
        self.metrics.record_histogram(RELOAD_DURATION, payload.duration, {"plugin": payload.name})

    def _plugin_failed(self, payload: PluginFailedPayload) -> None:
        tags = {"plugin": payload.name, "stage": payload.stage}
        self.metrics.increment_counter(PLUGIN_FAILURES, 1, tags)
        if payload.stage == "reload":
            self.metrics.increment_counter(RELOADS, 1, {"plugin": payload.name, "outcome": "error"})


def _error_type(error: str) -> str:
    """The error class from ``"TimeoutError: ..."`` style messages (bounded), else ``error``."""
    head = error.split(":", 1)[0].strip()
    return head if head.isidentifier() and len(head) <= 64 else "error"
