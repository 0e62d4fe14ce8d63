"""`ModelRegistry`: picks a provider for each model call, falls back, and reports every call.

Plugins register `ModelHandler` objects for model types. A call tries the handlers of its type
in order: the provider asked for by the call (only that one), else the provider pinned in config
first, then by priority, then registration order. A retryable failure (timeout, connection,
rate limit, 5xx: `ModelCallError(retryable=True)`, `TimeoutError`, `ConnectionError`) moves on
to the next handler; any other failure is raised at once, because another provider would fail
the same bad request. A provider that fails `breaker_failures` times in a row is skipped for
`breaker_cooldown` seconds (circuit breaker), then tried again. Each attempt emits
``model:used`` with the provider, duration, tokens, the providers that failed before it (the
fallback path) and the error.

A call answered by another provider than the first of its plan is never silent: a WARNING
names the model type, the provider passed over and why (`reason_of`), ``model:used`` carries
``fallback_reason``, and the call context (the message being processed) gets a `FallbackMark`
that the runtime puts into the reply's metadata. The agent a call is made for (`CallContext`)
may prefer a provider (its character's ``modelProvider``: tried first, then the usual order)
and name models per model type (put into params that have a ``model`` field).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

from contracts.events import MODEL_USED, Event, EventBusProtocol, ModelUsedPayload
from contracts.models import (
    ModelError,
    ModelHandler,
    ModelParams,
    ModelSettings,
    ModelType,
    TextChunk,
)
from contracts.plugin import LoadedPluginLike
from host.deadlines import STOPPED, Sweeper
from host.deadlines import ensure as _ensure_sweeper
from host.deadlines import expired as _expired
from host.deadlines import shared as _deadlines
from host.deadlines import timed_out as _timed_out
from host.deadlines import withdraw as _withdraw
from host.events import EventBus
from host.model_context import CallContext, FallbackMark, call_context, coerce_params, for_caller
from host.model_failures import NO_PATH, FailurePath, exhausted, is_retryable, reason_of
from host.model_providers import ProviderChoice, ProviderEntry
from host.model_report import (
    ANSWERED,
    ANSWERED_FOR_CALLER,
    new_payload,
    report,
)
from host.model_report import clock as _clock
from host.model_stream import stream_model as _stream_model
from host.pydantic_slots import set_dict, set_extra, set_fields_set, set_private

__all__ = [
    "CallContext",
    "FallbackMark",
    "ModelRegistry",
    "call_context",
    "is_retryable",
    "reason_of",
]

P = TypeVar("P", bound=ModelParams)
R = TypeVar("R")

# Methods of imported names, bound once: CPython 3.11 compiles a method call on a name bound by
# an import as an attribute load that makes a bound method each time (no LOAD_METHOD).
_caller = call_context.get
_Used = ModelUsedPayload
_new_payload, _set_dict, _set_fields_set = new_payload, set_dict, set_fields_set
_set_extra, _set_private = set_extra, set_private


def _unreported(event: Event[Any], payload: Any) -> None:
    """What a registry without a bus reports a call with: nothing."""


class _Timeout:
    """What a call's deadline is armed with: the registry's timeout, read when swept."""

    __slots__ = ("_registry",)

    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry

    @property
    def limit(self) -> float | None:
        return self._registry.settings.timeout


class ModelRegistry:
    """Model handlers by type, with selection, fallback, circuit breaking and ``model:used``.

    Which provider a call tries when is `host.model_providers.ProviderChoice` (`choice`); what
    a call reports, `host.model_report`; streaming, `host.model_stream`."""

    def __init__(
        self,
        settings: ModelSettings | None = None,
        *,
        events: EventBusProtocol | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.choice = ProviderChoice(settings or ModelSettings(), clock)
        self._events: EventBusProtocol | None = None
        self._publish: Callable[[Event[Any], Any], Awaitable[None] | None] = _unreported
        """How a call reports ``model:used`` on `events`: the emit, or what is left of it."""
        self.events = events
        self._ready = self.choice.ready
        """The choice's plans while no circuit is open (the same dict, cleared in place): one
        lookup a call, and no check of the circuits."""
        self.deadlines = _deadlines
        self._swept: Sweeper = STOPPED
        """The deadline sweeper the last call made sure of (skipped while its loop runs)."""
        self._timeout = _Timeout(self)

    @property
    def events(self) -> EventBusProtocol | None:
        """The bus each call reports ``model:used`` on (None: no reports)."""
        return self._events

    @events.setter
    def events(self, events: EventBusProtocol | None) -> None:
        self._events = events
        if events is None:
            self._publish = _unreported
        elif isinstance(events, EventBus):  # plain-function handlers run without a coroutine
            self._publish = events.publish
        else:
            self._publish = events.emit

    @property
    def settings(self) -> ModelSettings:
        return self.choice.settings

    @settings.setter
    def settings(self, settings: ModelSettings) -> None:
        self.choice.settings = settings

    @property
    def clock(self) -> Callable[[], float]:
        """What the circuit breaker's cooldown is measured with."""
        return self.choice.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        self.choice.clock = clock

    # registration ------------------------------------------------------------------------------

    def register(
        self, handler: ModelHandler[Any, Any], *, owner: str, priority: int | None = None
    ) -> None:
        """Add `handler` for its model type, tagged with the plugin `owner`."""
        self.choice.register(handler, owner, priority)

    def register_plugin(self, loaded: LoadedPluginLike) -> None:
        """Registrar hook: add everything the plugin's ``models()`` returns (all or nothing)."""
        models = getattr(loaded.instance, "models", None)
        handlers = list(models()) if callable(models) else []
        for handler in handlers:
            if not isinstance(handler, ModelHandler):
                raise ModelError(f"plugin {loaded.name}: models() returned {handler!r}")
        for handler in handlers:
            self.register(handler, owner=loaded.name)

    def unregister_plugin(self, name: str) -> None:
        self.unregister_owner(name)

    def unregister_owner(self, owner: str) -> int:
        """Remove every handler `owner` registered (unload, reload); how many."""
        return self.choice.unregister_owner(owner)

    def providers(self, model_type: ModelType[Any, Any] | str) -> list[str]:
        """Providers of a model type in the order calls try them."""
        return self.choice.providers(model_type if isinstance(model_type, str) else model_type.name)

    def registered(self) -> dict[str, list[str]]:
        """Model type name -> its providers in call order (for errors and ``plugins list``)."""
        return self.choice.registered()

    # calling ---------------------------------------------------------------------------------

    async def use_model(
        self, model_type: ModelType[P, R], params: P, *, provider: str | None = None
    ) -> R:
        """Call the best available handler of `model_type`, falling back on retryable errors.

        The common case (typed params, no provider asked for, no agent preference, no open
        circuit, the first handler answers) is kept to a plan lookup, a pooled deadline, the
        call and its report. Kept in one piece for speed (a step as a function of its own costs
        its call on every model call, against a 2 µs budget), and because the deadline sweeper
        reads ``armed`` off this very frame (`host.deadlines`)."""
        if type(params) is not model_type.params:
            params = coerce_params(model_type, params)
        plan: Sequence[ProviderEntry] | None
        armed: _Timeout | None  # what the deadline sweeper times (`host.deadlines`)
        caller = _caller()
        if caller is None:  # no agent's preference: the plan at hand, unless a provider is named
            prefer = None
            plan = self._ready.get(model_type.name) if provider is None else None
        else:
            params, prefer = for_caller(model_type, params, caller)
            ready = provider is None and prefer is None
            plan = self._ready.get(model_type.name) if ready else None
        path = NO_PATH
        if not plan:
            # an error naming what is registered if there is nothing to call
            plan, skipped = self.choice.candidates(model_type, provider, prefer)
            if skipped:
                path = FailurePath.of(skipped)
        events = self._events
        last: BaseException | None = None
        if self._swept.gauge._thread_id is None:  # a sweeper must run here (`Sweeper`)
            self._swept = _ensure_sweeper()
        for entry in plan:
            started = _clock()
            try:
                armed = self._timeout  # a local store: the sweeper reads it off the frame
                result = await entry.call(params)
                armed = None
                if _expired:  # the provider may have swallowed its deadline's cancellation
                    _withdraw(inspect.currentframe())
            except BaseException as exc:
                armed = None  # noqa: F841  (read by the sweeper off the frame)
                if isinstance(exc, asyncio.CancelledError):
                    if not (_expired and _timed_out(inspect.currentframe())):
                        raise
                    exc = TimeoutError(f"{entry.provider} took over {self.settings.timeout}s")
                else:
                    if _expired:
                        _withdraw(inspect.currentframe())
                    if not isinstance(exc, Exception):
                        raise
                if events is not None:
                    await report(events, entry, started, path, params, error=exc)
                if not is_retryable(exc):
                    raise
                self.choice.failed(entry, exc)
                if path is NO_PATH:
                    path = FailurePath()
                last = path.add(entry, exc)
                continue
            if type(result) is not model_type.result and not isinstance(result, model_type.result):
                error = ModelError(
                    f"provider {entry.provider} (plugin {entry.owner}) answered {model_type.name} "
                    f"with {type(result).__name__}, not {model_type.result.__name__}"
                )
                if events is not None:
                    await report(events, entry, started, path, params, error=error)
                raise error
            if entry.circuit.failures:
                self.choice.succeeded(entry)
            if path is not NO_PATH:  # a provider was passed over: a fallback answered
                path.fell_back(entry, caller)
                if events is not None:
                    await report(events, entry, started, path, params, result=result)
            elif events is not None:
                # `report` of the common case, inline: the first provider answered
                # a dict's copy (names and defaults in): cheaper than a display of 15 keys
                values = entry.answered.copy()
                values["duration"] = _clock() - started
                values["params"] = params
                values["output"] = result
                if getattr(result, "usage", None) is not None or not (
                    type(result) is entry.result or isinstance(result, BaseModel)
                ):  # token counts to read (and maybe check), or an output that is not a model
                    await report(events, entry, started, path, params, result=result)
                    return result
                if caller is None:
                    given = ANSWERED
                else:
                    values["agent_id"] = caller.agent_id
                    values["room_id"] = caller.room_id
                    values["message_id"] = caller.message_id
                    given = ANSWERED_FOR_CALLER
                payload = _new_payload(_Used)
                _set_dict(payload, values)
                _set_fields_set(payload, given)
                _set_extra(payload, None)
                _set_private(payload, None)
                pending = self._publish(MODEL_USED, payload)
                if pending is not None:
                    await pending
            return result
        raise exhausted(model_type, plan, last)

    def stream_model(
        self, model_type: ModelType[P, R], params: P, *, provider: str | None = None
    ) -> AsyncIterator[TextChunk]:
        """Stream `model_type`'s text. A provider without streaming answers in one chunk; falls
        back like `use_model` only until the first chunk was yielded. The timeout applies to
        each wait for the next chunk (a stream may last longer, a stalled one is abandoned)."""
        return _stream_model(self, model_type, params, provider)


_deadlines.watch(ModelRegistry.use_model.__code__)
