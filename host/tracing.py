"""OpenTelemetry spans for the message pipeline and model calls (the ``otel`` extra).

Each message an agent processes is an ``invoke_agent {agent}`` span, with one child span per
pipeline stage (``agenthost.stage memory``, ``providers``, ``model``, ``actions``,
``evaluators``) and, under the stage that made them, one span per model call named and
attributed after the OpenTelemetry GenAI semantic conventions: ``chat text_large`` with
``gen_ai.operation.name``, ``gen_ai.system`` (the provider), ``gen_ai.usage.input_tokens`` /
``output_tokens``, ``error.type``. Spans go to the global tracer provider: set one with the
OpenTelemetry SDK (an OTLP exporter, or an in-memory one in tests). Without the extra, or with
no provider set, no span is made (a check per stage).

Spans are started with an explicit parent, never made current: a streamed reply runs its steps
in whatever task consumes the stream, where an attached context could not be detached. Model
spans are made from the ``model:used`` event, which ends each call and carries its duration.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Iterator
from typing import Any
from uuid import UUID

from contracts.events import MODEL_USED, EventBusProtocol, ModelUsedPayload, Subscription
from contracts.models import model_type_named

try:
    from opentelemetry import trace
    from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, SpanKind, StatusCode
except ImportError:  # the otel extra is not installed: no spans
    trace = None  # type: ignore[assignment]

__all__ = [
    "MessageTrace",
    "shutdown",
    "stage",
    "start_message",
    "subscribe",
    "tracer",
    "use_otlp",
    "use_provider",
]

_cached: tuple[Any, Any] | None = None
_open: weakref.WeakValueDictionary[UUID, MessageTrace] = weakref.WeakValueDictionary()
"""The message traces in progress, by message id (gone with the run that holds them)."""


_provider: Any = None
"""A tracer provider set by `use_provider` (tests, `use_otlp`); else the global one."""


def use_provider(provider: Any) -> None:
    """Trace to `provider` instead of the global tracer provider (None: the global one again)."""
    global _provider
    _provider = provider


def use_otlp(endpoint: str, service_name: str = "agenthost") -> None:
    """Export spans over OTLP/HTTP to `endpoint` (``metrics.otlp_endpoint``, e.g.
    http://127.0.0.1:4318), batched; the ``otel`` extra."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    use_provider(provider)


def shutdown() -> None:
    """Flush and stop the provider `use_otlp` set (the host's telemetry stops)."""
    global _provider
    provider, _provider = _provider, None
    if provider is not None and hasattr(provider, "shutdown"):
        provider.shutdown()


_UNSET = "unset"
"""`_global_provider` found neither a global provider nor the variable naming one."""
_global_state: str | None = None


def _global_provider() -> Any | None:
    """OpenTelemetry's global tracer provider, None while there is none. Asked four times a
    message: ``get_tracer_provider`` looks the environment up each time while none is set (a
    tenth of a message's tracing-off cost), so its variable is read once; a provider set in
    code later is still found (``set_tracer_provider`` sets it once, for good)."""
    global _global_state
    found = getattr(trace, "_TRACER_PROVIDER", None)
    if found is not None:
        return found
    if _global_state is _UNSET:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, ProxyTracerProvider) and getattr(trace, "_TRACER_PROVIDER", 0) is None:
        _global_state = _UNSET
    return provider


def tracer() -> Any | None:
    """The agenthost tracer (of `use_provider`'s provider, else the global one); None when there
    is no provider to record."""
    global _cached
    if trace is None:
        return None
    provider = _provider if _provider is not None else _global_provider()
    if provider is None or isinstance(provider, ProxyTracerProvider | NoOpTracerProvider):
        return None
    if _cached is None or _cached[0] is not provider:
        _cached = (provider, provider.get_tracer("agenthost"))
    return _cached[1]


class MessageTrace:
    """The spans of one message: the root and the stage running now."""

    def __init__(self, spans: Any, root: Any) -> None:
        self._tracer = spans
        self.root = root
        self.stage_span: Any = None
        self.ended = False

    def parent(self) -> Any:
        return trace.set_span_in_context(self.stage_span or self.root)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        span = self._tracer.start_span(
            f"agenthost.stage {name}",
            context=trace.set_span_in_context(self.root),
            attributes={"agenthost.stage": name},
        )
        outer, self.stage_span = self.stage_span, span
        try:
            yield
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(StatusCode.ERROR, str(exc))
            raise
        finally:
            self.stage_span = outer
            span.end()

    def end(self, error: BaseException | None = None, *, responded: bool | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        if responded is not None:
            self.root.set_attribute("agenthost.responded", responded)
        if error is not None:
            self.root.record_exception(error)
            self.root.set_attribute("error.type", type(error).__name__)
            self.root.set_status(StatusCode.ERROR, str(error))
        self.root.end()


def start_message(
    agent: str, agent_id: UUID, room_id: UUID, message_id: UUID
) -> MessageTrace | None:
    """The trace of a message an agent starts processing (None when tracing is off)."""
    spans = tracer()
    if spans is None:
        return None
    root = spans.start_span(
        f"invoke_agent {agent}",
        kind=SpanKind.INTERNAL,
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": agent,
            "gen_ai.agent.id": str(agent_id),
            "gen_ai.conversation.id": str(room_id),
            "agenthost.message.id": str(message_id),
        },
    )
    found = _open[message_id] = MessageTrace(spans, root)
    return found


_NO_SPAN = contextlib.nullcontext()


def stage(run_trace: MessageTrace | None, name: str) -> contextlib.AbstractContextManager[None]:
    """A stage span under `run_trace` (a shared no-op when it is None: tracing off)."""
    return _NO_SPAN if run_trace is None else run_trace.stage(name)


def _model_used(payload: ModelUsedPayload) -> None:
    spans = tracer()
    if spans is None:
        return
    end = time.time_ns()
    declared = model_type_named(payload.model_type)
    operation = (declared.operation if declared is not None else None) or payload.model_type
    found = _open.get(payload.message_id) if payload.message_id is not None else None
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.system": payload.provider,
        "agenthost.model.type": payload.model_type,
    }
    model = getattr(payload.params, "model", None)
    if isinstance(model, str) and model:
        attributes["gen_ai.request.model"] = model
    if payload.input_tokens is not None:
        attributes["gen_ai.usage.input_tokens"] = payload.input_tokens
    if payload.output_tokens is not None:
        attributes["gen_ai.usage.output_tokens"] = payload.output_tokens
    if payload.fallback:
        attributes["agenthost.model.fallback_from"] = list(payload.fallback_from)
    span = spans.start_span(
        f"{operation} {payload.model_type}",
        context=found.parent() if found is not None else None,
        kind=SpanKind.CLIENT,
        attributes=attributes,
        start_time=end - int(payload.duration * 1e9),
    )
    if payload.error is not None:
        span.set_attribute("error.type", payload.error.split(":", 1)[0])
        span.set_status(StatusCode.ERROR, payload.error)
    span.end(end_time=end)


def subscribe(bus: EventBusProtocol, *, owner: str = "host") -> Subscription:
    """Make a span of every model call the bus reports (``model:used``)."""
    return bus.on(MODEL_USED, _model_used, owner=owner, priority=1_000_000)
