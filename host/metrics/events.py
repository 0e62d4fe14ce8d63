"""`EventMetrics`: the runtime's metrics, derived from the events it already emits.

Subscribed to each event it records (`EventMetrics.subscribe`), it turns them into counters
and histograms, so the runtime, the model registry and the loader record metrics without calling
a collector, and a plugin's actions and models are measured without their authors doing
anything. Model metrics use the OpenTelemetry GenAI names (``gen_ai.client.operation.duration``,
``gen_ai.client.token.usage``) and attributes (``gen_ai.operation.name`` from the model type's
``operation``, ``gen_ai.system`` the provider, ``gen_ai.token.type``, ``error.type``), plus
``agenthost.model.type``; tags are bounded sets (event, action, provider, stage), never user
data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

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
    EventBusProtocol,
    EventPayload,
    HandlerFailedPayload,
    MessagePayload,
    ModelUsedPayload,
    PluginFailedPayload,
    PluginReloadedPayload,
    Subscription,
)
from contracts.metrics import MetricsCollector
from contracts.models import model_type_named
from host.metrics.bound import Recorder, bind

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
    "MODEL_PROVIDER_FALLBACKS",
    "MODEL_TOKENS",
    "MODEL_TYPE_TAG",
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
MODEL_PROVIDER_FALLBACKS = "agenthost.model.provider_fallbacks"
"""Calls a fallback answered, by the provider passed over (``provider``), ``model_type`` and
``reason`` (Prometheus: ``agenthost_model_provider_fallbacks_total``)."""
HANDLER_FAILURES = "agenthost.events.handler_failures"
PLUGIN_FAILURES = "agenthost.plugins.failures"
RELOADS = "agenthost.plugins.reloads"
RELOAD_DURATION = "agenthost.plugins.reload.duration"
MODEL_TYPE_TAG = "agenthost.model.type"
"""The model type (``text_large``) beside ``gen_ai.operation.name`` (``chat``), which two model
types may share."""

K = TypeVar("K")
V = TypeVar("V")


_LAST = -(10**6)
"""Priority of the metrics subscriptions: they observe, so they run after everything else."""
_CACHED = 10_000
"""Bound series kept per kind of key; tags come from bounded sets, this only caps a surprise."""
_NO_MODEL_CALL: Any = (None, None, None)
"""`EventMetrics._last_model` before the first model call: no call matches it (no model type is
None), so a call needs no check that there was one."""


@dataclass(slots=True)
class _ModelSeries:
    """The series one (model type, provider, outcome) records into."""

    duration: Recorder
    errors: Recorder | None
    fallbacks: Recorder
    input_tokens: Recorder
    output_tokens: Recorder


class EventMetrics:
    """Records metrics for the events it knows (a handler of each, or of all with ``on_any``).

    The runtime's events (messages, stages, model calls, actions) record into series bound once
    per tag set (`host.metrics.bound`), so each observation skips the tag lookup; rare events
    (failures, reloads) record through the collector's methods."""

    def __init__(self, metrics: MetricsCollector) -> None:
        self.metrics = metrics
        self._events: tuple[tuple[Event[Any], Callable[[Any], None]], ...] = (
            (MESSAGE_RECEIVED, self._received),
            (MESSAGE_SENT, self._sent),
            (ACTION_COMPLETED, self._action),
            (MODEL_USED, self._model),
            (HANDLER_FAILED, self._handler_failed),
            (PLUGIN_RELOADED, self._reloaded),
            (PLUGIN_FAILED, self._plugin_failed),
        )
        self._recorders = {event.name: recorder for event, recorder in self._events}
        self._received_by: dict[int, Recorder] = {}
        self._sent_by: dict[int, Recorder] = {}
        """Message counters by agent id (as an int: hashing a UUID runs Python code)."""
        self._stages: dict[str, Recorder] = {}
        self._models: dict[tuple[str, str, str | None], _ModelSeries] = {}
        self._last_model: tuple[object, object, _ModelSeries] = _NO_MODEL_CALL
        """The series of the last successful model call, by the identity of its names."""
        self._actions: dict[tuple[str, str | None, bool], tuple[Recorder, Recorder]] = {}
        self._fallbacks: dict[tuple[str, str, str], Recorder] = {}

    def __call__(self, event: Event[Any], payload: EventPayload) -> None:
        recorder = self._recorders.get(event.name)
        if recorder is not None:
            recorder(payload)

    def subscribe(self, bus: EventBusProtocol, *, owner: str = "host") -> list[Subscription]:
        """Subscribe to each event this records, after the event's other handlers. The host
        does this rather than ``bus.on_any(self)``: other events do not reach it at all."""
        return [
            bus.on(event, recorder, owner=owner, priority=_LAST) for event, recorder in self._events
        ]

    def _message_counter(self, counters: dict[int, Recorder], name: str, agent: UUID) -> Recorder:
        found = bind(self.metrics, "counter", name, {"agent_id": str(agent)})
        _keep(counters, agent.int, found)
        return found

    def _received(self, payload: MessagePayload) -> None:
        agent = payload.agent_id
        count = self._received_by.get(agent.int)
        if count is None:
            count = self._message_counter(self._received_by, MESSAGES_RECEIVED, agent)
        count(1)

    def _sent(self, payload: MessagePayload) -> None:
        agent = payload.agent_id
        count = self._sent_by.get(agent.int)
        if count is None:
            count = self._message_counter(self._sent_by, MESSAGES_PROCESSED, agent)
        count(1)
        stages = self._stages
        for stage, seconds in payload.timings.items():
            record = stages.get(stage)
            if record is None:
                record = bind(self.metrics, "histogram", STAGE_DURATION, {"stage": stage})
                _keep(stages, stage, record)
            record(seconds)

    def _action(self, payload: ActionCompletedPayload) -> None:
        key = (payload.action, payload.plugin, payload.success)
        found = self._actions.get(key)
        if found is None:
            tags = {
                "action": payload.action,
                "plugin": payload.plugin or "",
                "success": "true" if payload.success else "false",
            }
            found = (
                bind(self.metrics, "histogram", ACTION_DURATION, tags),
                bind(self.metrics, "counter", ACTION_EXECUTIONS, tags),
            )
            _keep(self._actions, key, found)
        duration, executions = found
        duration(payload.duration)
        executions(1)

    def _model(self, payload: ModelUsedPayload) -> None:
        # the fields read off the payload's dict: a pydantic model's attribute goes through
        # its __getattr__ hook, three times the cost of a dict item (this runs per model call)
        fields = payload.__dict__
        error = fields["error"]
        last = self._last_model  # most calls in a row go to the same provider and succeed
        if error is None and fields["model_type"] is last[0] and fields["provider"] is last[1]:
            series = last[2]
        else:
            model_type, provider = fields["model_type"], fields["provider"]
            key = (model_type, provider, None if error is None else _error_type(error))
            found = self._models.get(key)
            if found is None:
                found = self._model_series(*key)
                _keep(self._models, key, found)
            series = found
            if error is None:
                self._last_model = (model_type, provider, series)
        series.duration(fields["duration"])
        if error is not None and series.errors is not None:
            series.errors(1)
        if fields["fallback"]:
            series.fallbacks(1)
            if error is None and payload.fallback_from:
                self._fell_back(
                    payload.fallback_from[0], payload.model_type, payload.fallback_reason
                )
        tokens = fields["input_tokens"]
        if tokens is not None:
            series.input_tokens(tokens)
        tokens = fields["output_tokens"]
        if tokens is not None:
            series.output_tokens(tokens)

    def _model_series(self, model_type: str, provider: str, error: str | None) -> _ModelSeries:
        declared = model_type_named(model_type)
        operation = (declared.operation if declared is not None else None) or model_type
        tags = {
            "gen_ai.operation.name": operation,
            "gen_ai.system": provider,
            MODEL_TYPE_TAG: model_type,
        }
        timed = tags if error is None else {**tags, "error.type": error}
        metrics = self.metrics
        return _ModelSeries(
            duration=bind(metrics, "histogram", MODEL_DURATION, timed),
            errors=None if error is None else bind(metrics, "counter", MODEL_ERRORS, timed),
            fallbacks=bind(metrics, "counter", MODEL_FALLBACKS, tags),
            input_tokens=bind(
                metrics, "histogram", MODEL_TOKENS, {**tags, "gen_ai.token.type": "input"}
            ),
            output_tokens=bind(
                metrics, "histogram", MODEL_TOKENS, {**tags, "gen_ai.token.type": "output"}
            ),
        )

    def _fell_back(self, provider: str, model_type: str, reason: str | None) -> None:
        key = (provider, model_type, reason or "error")
        count = self._fallbacks.get(key)
        if count is None:
            tags = {"provider": provider, "model_type": model_type, "reason": key[2]}
            count = bind(self.metrics, "counter", MODEL_PROVIDER_FALLBACKS, tags)
            _keep(self._fallbacks, key, count)
        count(1)

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


def _keep(cache: dict[K, V], key: K, value: V) -> None:
    if len(cache) < _CACHED:
        cache[key] = value


def _error_type(error: str) -> str:
    """The error class from ``"TimeoutError: ..."`` style messages (bounded), else ``error``."""
    head = error.split(":", 1)[0].strip()
    return head if head.isidentifier() and len(head) <= 64 else "error"
