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
import itertools
import threading
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import aclosing
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar
from uuid import UUID

from loguru import logger
from pydantic import BaseModel, ValidationError

from contracts.events import MODEL_USED, EventBusProtocol, ModelUsedPayload
from contracts.models import (
    InvalidModelParamsError,
    ModelCallError,
    ModelError,
    ModelHandler,
    ModelParams,
    ModelSettings,
    ModelType,
    NoModelHandlerError,
    TextChunk,
)
from contracts.plugin import LoadedPluginLike
from host.deadlines import shared as _deadlines
from host.validation import field_problems

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
T = TypeVar("T")

_order = itertools.count()
_clock = time.perf_counter


@dataclass(frozen=True, slots=True)
class FallbackMark:
    """A call that another provider answered: what the reply's metadata says about it."""

    model_type: str
    from_provider: str
    to_provider: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {
            "from": self.from_provider,
            "to": self.to_provider,
            "reason": self.reason,
            "model_type": self.model_type,
        }


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who a model call is made for; ``model:used`` carries it (the audit trail needs it)."""

    agent_id: UUID
    room_id: UUID
    message_id: UUID
    provider: str | None = None
    """The provider the agent prefers (its character's ``modelProvider``): tried first, then
    the usual order; a call naming its own ``provider=`` is not affected."""
    model_names: Mapping[str, str] = field(default_factory=dict)
    """Model type name -> model name the agent asks for (character ``settings.models``)."""
    fallbacks: list[FallbackMark] = field(default_factory=list)
    """Filled by the registry: the calls made in this context that a fallback answered."""


call_context: ContextVar[CallContext | None] = ContextVar("agenthost_model_call", default=None)
"""Set by an agent runtime while it processes a message."""


@dataclass(slots=True)
class _Circuit:
    """Consecutive failures of one provider for one model type, and until when it is skipped."""

    failures: int = 0
    open_until: float = 0.0


@dataclass(slots=True, eq=False)
class _Entry:
    """One registered handler, with what a call needs looked up once at registration."""

    handler: ModelHandler[Any, Any]
    owner: str
    provider: str
    priority: int
    circuit: _Circuit
    """Shared by every entry of the same provider and model type (it outlives a reload)."""
    order: int = field(default_factory=lambda: next(_order))
    call: Callable[[Any], Awaitable[Any]] = field(init=False)
    type_name: str = field(init=False)
    result: type[Any] = field(init=False)
    """The model type's result type."""

    def __post_init__(self) -> None:
        self.call = self.handler.handler
        self.type_name = self.handler.model_type.name
        self.result = self.handler.model_type.result


class _Timeout:
    """What a call's deadline is armed with: the registry's timeout, read when swept."""

    __slots__ = ("_registry",)

    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry

    @property
    def limit(self) -> float | None:
        return self._registry.settings.timeout


def is_retryable(exc: BaseException) -> bool:
    """Whether another provider may succeed where this failure happened."""
    if isinstance(exc, ModelCallError):
        return exc.retryable
    return isinstance(exc, TimeoutError | ConnectionError)


def reason_of(exc: BaseException) -> str:
    """A short fixed word for why a provider failed (metric label, the reply's mark)."""
    if isinstance(exc, ModelCallError):
        given = exc.reason
        if given is not None and given.isidentifier() and len(given) <= 32:
            return given
        if exc.status == 429:
            return "rate_limited"
        if exc.status is not None and exc.status >= 500:
            return "server_error"
        return "error"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionError):
        return "unreachable"
    return "error"


_NOT_HEALTH = frozenset({"model_not_served"})
"""Failures that say nothing about the provider's health: they do not open its circuit."""


def _usage(result: object) -> tuple[int | None, int | None]:
    usage = getattr(result, "usage", None)
    if usage is None:
        return None, None
    return getattr(usage, "input_tokens", None), getattr(usage, "output_tokens", None)


class ModelRegistry:
    """Model handlers by type, with selection, fallback, circuit breaking and ``model:used``."""

    def __init__(
        self,
        settings: ModelSettings | None = None,
        *,
        events: EventBusProtocol | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or ModelSettings()
        self.events = events
        self.clock = clock
        self._entries: dict[str, list[_Entry]] = {}
        self._plans: dict[str, tuple[_Entry, ...]] = {}
        """Model type name -> its entries in call order (rebuilt when registrations change)."""
        self._named: dict[tuple[str, str], tuple[_Entry, ...]] = {}
        """(model type name, provider) -> that provider's entries, for calls naming it."""
        self._preferred: dict[tuple[str, str], tuple[_Entry, ...]] = {}
        """(model type name, provider) -> the plan with that provider first (an agent's
        ``modelProvider``)."""
        self._circuits: dict[tuple[str, str], _Circuit] = {}
        self._open_circuits = 0
        self._deadlines = _deadlines
        self._timeout = _Timeout(self)

    # registration ------------------------------------------------------------------------------

    def register(
        self, handler: ModelHandler[Any, Any], *, owner: str, priority: int | None = None
    ) -> None:
        """Add `handler` for its model type, tagged with the plugin `owner`."""
        if not isinstance(handler, ModelHandler):
            raise ModelError(f"plugin {owner}: models() returned {handler!r}, not a ModelHandler")
        provider = handler.provider or owner
        type_name = handler.model_type.name
        entry = _Entry(
            handler,
            owner,
            provider,
            handler.priority if priority is None else priority,
            self._circuits.setdefault((provider, type_name), _Circuit()),
        )
        self._entries.setdefault(type_name, []).append(entry)
        self._plans.clear()
        self._named.clear()
        self._preferred.clear()

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
        removed = 0
        for name, entries in self._entries.items():
            kept = [e for e in entries if e.owner != owner]
            removed += len(entries) - len(kept)
            self._entries[name] = kept
        self._plans.clear()
        self._named.clear()
        self._preferred.clear()
        return removed

    def providers(self, model_type: ModelType[Any, Any] | str) -> list[str]:
        """Providers of a model type in the order calls try them."""
        name = model_type if isinstance(model_type, str) else model_type.name
        return [e.provider for e in self._plan(name)]

    def registered(self) -> dict[str, list[str]]:
        """Model type name -> its providers in call order (for errors and ``plugins list``)."""
        return {name: self.providers(name) for name, entries in self._entries.items() if entries}

    def _plan(self, type_name: str) -> tuple[_Entry, ...]:
        plan = self._plans.get(type_name)
        if plan is None:
            entries = sorted(self._entries.get(type_name, ()), key=lambda e: (-e.priority, e.order))
            pinned = self.settings.pins.get(type_name)
            if pinned is not None and any(e.provider == pinned for e in entries):
                entries.sort(key=lambda e: e.provider != pinned)  # stable: the pin goes first
            elif pinned is not None and entries:
                # a typo, or the pinned plugin failed or is not configured: said, not silent
                logger.bind(plugin="host").warning(
                    "models.pins.{} is {!r}, which has no {} handler: {} answers instead"
                    " (registered: {})",
                    type_name,
                    pinned,
                    type_name,
                    entries[0].provider,
                    ", ".join(e.provider for e in entries),
                )
            plan = self._plans[type_name] = tuple(entries)
        return plan

    def _candidates(
        self, model_type: ModelType[Any, Any], provider: str | None, prefer: str | None = None
    ) -> tuple[Sequence[_Entry], tuple[_Entry, ...]]:
        """The entries to try in order, and the ones skipped because their circuit is open."""
        if provider is not None:
            chosen = self._named.get((model_type.name, provider))
            if chosen is None:
                chosen = tuple(e for e in self._plan(model_type.name) if e.provider == provider)
                if not chosen:
                    raise NoModelHandlerError(
                        f"provider {provider!r} has no handler for {model_type.name}; "
                        f"{self._describe(model_type)}"
                    )
                self._named[(model_type.name, provider)] = chosen
            return chosen, ()
        plan = self._plan(model_type.name) if prefer is None else self._prefer(model_type, prefer)
        if not plan:
            raise NoModelHandlerError(
                f"no model handler for {model_type.name}; {self._describe(model_type)}"
            )
        if not self._open_circuits:
            return plan, ()
        now = self.clock()
        ready = [e for e in plan if e.circuit.open_until <= now]
        if not ready:
            # every circuit open: try them anyway rather than fail without asking anyone
            return plan, ()
        return ready, tuple(e for e in plan[: plan.index(ready[0])])

    def _prefer(self, model_type: ModelType[Any, Any], provider: str) -> tuple[_Entry, ...]:
        """The plan of `model_type` with `provider` first (an agent's ``modelProvider``)."""
        key = (model_type.name, provider)
        plan = self._preferred.get(key)
        if plan is None:
            entries = list(self._plan(model_type.name))
            if entries and not any(e.provider == provider for e in entries):
                logger.bind(plugin="host").warning(
                    "an agent's modelProvider is {!r}, which has no {} handler: {} answers"
                    " instead (registered: {})",
                    provider,
                    model_type.name,
                    entries[0].provider,
                    ", ".join(e.provider for e in entries),
                )
            entries.sort(key=lambda e: e.provider != provider)
            plan = self._preferred[key] = tuple(entries)
        return plan

    def _describe(self, model_type: ModelType[Any, Any]) -> str:
        own = self.providers(model_type)
        if own:
            return f"registered for {model_type.name}: {', '.join(own)}"
        known = self.registered()
        listing = "; ".join(f"{name}: {', '.join(p)}" for name, p in sorted(known.items()))
        return f"registered: {listing or 'nothing (is a model plugin installed and enabled?)'}"

    def _succeeded(self, entry: _Entry) -> None:
        circuit = entry.circuit
        if circuit.open_until:
            self._open_circuits -= 1
        circuit.failures = 0
        circuit.open_until = 0.0

    def _failed(self, entry: _Entry, exc: BaseException) -> None:
        if isinstance(exc, ModelCallError) and exc.reason in _NOT_HEALTH:
            return
        circuit = entry.circuit
        circuit.failures += 1
        if circuit.failures >= self.settings.breaker_failures:
            if not circuit.open_until:
                self._open_circuits += 1
            circuit.open_until = self.clock() + self.settings.breaker_cooldown
            logger.bind(plugin=entry.owner).warning(
                "model provider {} failed {} times in a row for {}; skipped for {}s",
                entry.provider,
                circuit.failures,
                entry.handler.model_type.name,
                self.settings.breaker_cooldown,
            )

    # calling ---------------------------------------------------------------------------------

    async def use_model(
        self, model_type: ModelType[P, R], params: P, *, provider: str | None = None
    ) -> R:
        """Call the best available handler of `model_type`, falling back on retryable errors.

        The common case (typed params, no provider asked for, no agent preference, no open
        circuit, the first handler answers) is kept to a plan lookup, a pooled deadline, the
        call and its report."""
        if type(params) is not model_type.params:
            params = _coerce(model_type, params)
        caller = call_context.get()
        prefer = None
        if caller is not None:
            params, prefer = _for_caller(model_type, params, caller)
        plan: Sequence[_Entry] | None = None
        skipped: tuple[_Entry, ...] = ()
        if provider is None and prefer is None and not self._open_circuits:
            plan = self._plans.get(model_type.name)
        if not plan:
            # an error naming what is registered if there is nothing to call
            plan, skipped = self._candidates(model_type, provider, prefer)
        events = self.events
        path = _Path.of(skipped) if skipped else _NO_PATH
        last: BaseException | None = None
        expired = _expired
        timeout: _Timeout | None = self._timeout
        if _thread() != _deadlines.thread:
            _ensure_sweeper()  # a sweeper must run on this loop (host/deadlines.py)
        for entry in plan:
            started = _clock()
            try:
                armed = timeout  # a local store: the sweeper reads it off the suspended frame
                result = await entry.call(params)
                armed = None
                if expired:  # the provider may have swallowed its deadline's cancellation
                    _withdraw(inspect.currentframe())
            except BaseException as exc:
                armed = None  # noqa: F841  (read by the sweeper off the frame)
                if isinstance(exc, asyncio.CancelledError):
                    if not (expired and _timed_out(inspect.currentframe())):
                        raise
                    exc = TimeoutError(f"{entry.provider} took over {self.settings.timeout}s")
                else:
                    if expired:
                        _withdraw(inspect.currentframe())
                    if not isinstance(exc, Exception):
                        raise
                if events is not None:
                    await self._report(entry, started, path, params, error=exc)
                if not is_retryable(exc):
                    raise
                self._failed(entry, exc)
                if path is _NO_PATH:
                    path = _Path()
                last = path.add(entry, exc)
                continue
            if type(result) is not model_type.result and not isinstance(result, model_type.result):
                error = ModelError(
                    f"provider {entry.provider} (plugin {entry.owner}) answered {model_type.name} "
                    f"with {type(result).__name__}, not {model_type.result.__name__}"
                )
                if events is not None:
                    await self._report(entry, started, path, params, error=error)
                raise error
            if entry.circuit.failures:
                self._succeeded(entry)
            if path.failed:
                path.fell_back(entry, caller)
                if events is not None:
                    await self._report(entry, started, path, params, result=result)
            elif events is not None:
                # `_report` of the common case, inline: the first provider answered
                values = _USED_DEFAULTS.copy()  # a dict's copy: cheaper than a display of 15 keys
                values["model_type"] = entry.type_name
                values["provider"] = entry.provider
                values["duration"] = _clock() - started
                values["params"] = params
                values["output"] = result
                if getattr(result, "usage", None) is not None or not (
                    type(result) is entry.result or isinstance(result, BaseModel)
                ):  # token counts to read (and maybe check), or an output that is not a model
                    await self._report(entry, started, path, params, result=result)
                    return result
                given = {"model_type", "provider", "duration", "params", "output"}
                if caller is not None:
                    values["agent_id"] = caller.agent_id
                    values["room_id"] = caller.room_id
                    values["message_id"] = caller.message_id
                    given.update(_CALLER_FIELDS)
                await events.emit(MODEL_USED, _used_payload(values, given))
            return result
        raise _exhausted(model_type, plan, last)

    async def stream_model(
        self, model_type: ModelType[P, R], params: P, *, provider: str | None = None
    ) -> AsyncIterator[TextChunk]:
        """Stream `model_type`'s text. A provider without streaming answers in one chunk; falls
        back like `use_model` only until the first chunk was yielded. The timeout applies to
        each wait for the next chunk (a stream may last longer, a stalled one is abandoned)."""
        if type(params) is not model_type.params:
            params = _coerce(model_type, params)
        params, prefer = _for_caller(model_type, params, call_context.get())
        candidates, skipped = self._candidates(model_type, provider, prefer)
        events = self.events
        path = _Path.of(skipped)
        last: BaseException | None = None
        for entry in candidates:
            started = time.perf_counter()
            yielded = False
            final: TextChunk | None = None
            texts: list[str] = []
            try:
                # closed with this stream: a consumer that stops early closes the provider's
                # stream now, not whenever the garbage collector finalizes it
                async with aclosing(self._chunks(entry, params)) as chunks:
                    async for chunk in chunks:
                        if not yielded and path.failed:
                            # the caller's context is the consumer's: read it at the first chunk
                            path.fell_back(entry, call_context.get())
                        yielded = True
                        final = chunk
                        texts.append(chunk.text)
                        yield chunk
            except Exception as exc:
                if events is not None:
                    await self._report(entry, started, path, params, error=exc, streamed=True)
                if not is_retryable(exc):
                    raise
                self._failed(entry, exc)  # a stream cut mid-way counts towards the breaker too
                if yielded:
                    raise  # part of the answer is out: too late to ask another provider
                last = path.add(entry, exc)
                continue
            if entry.circuit.failures:
                self._succeeded(entry)
            if path.failed and not yielded:  # an empty answer from the fallback: marked too
                path.fell_back(entry, call_context.get())
            if events is not None:
                # the recorded output is the whole text (replay answers with it), not the last
                # chunk's
                whole = None if final is None else final.model_copy(update={"text": "".join(texts)})
                await self._report(entry, started, path, params, result=whole, streamed=True)
            return
        raise _exhausted(model_type, candidates, last)

    async def _chunks(self, entry: _Entry, params: Any) -> AsyncGenerator[TextChunk, None]:
        stream = entry.handler.stream
        if stream is None:
            yield _one_chunk(entry, await self._within_timeout(entry, entry.call(params)))
            return
        chunks = stream(params)
        try:
            while True:
                try:
                    chunk = await self._within_timeout(entry, anext(chunks))
                except StopAsyncIteration:
                    return
                yield chunk
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()

    async def _within_timeout(self, entry: _Entry, step: Awaitable[T]) -> T:
        """Await `step`, turning the registry's deadline into a `TimeoutError`."""
        deadline = self._deadlines.start(self.settings.timeout)
        try:
            try:
                return await step
            finally:
                timed_out = self._deadlines.finish(deadline)
        except asyncio.CancelledError:
            if timed_out:
                raise TimeoutError(f"{entry.provider} took over {self.settings.timeout}s") from None
            raise

    def _report(
        self,
        entry: _Entry,
        started: float,
        path: _Path,
        params: BaseModel,
        *,
        result: object = None,
        error: BaseException | None = None,
        streamed: bool = False,
    ) -> Awaitable[None]:
        """Emit ``model:used`` for one attempt: the emit to await (callers check that there
        is a bus; no coroutine of its own around the bus's)."""
        assert self.events is not None
        values = _USED_DEFAULTS.copy()
        values["model_type"] = entry.type_name
        values["provider"] = entry.provider
        values["duration"] = _clock() - started
        values["params"] = params
        given = {"model_type", "provider", "duration", "params"}
        caller = call_context.get()
        if caller is not None:
            values["agent_id"] = caller.agent_id
            values["room_id"] = caller.room_id
            values["message_id"] = caller.message_id
            given.update(_CALLER_FIELDS)
        trusted = True
        usage = getattr(result, "usage", None)
        if usage is not None:
            input_tokens, output_tokens = _usage(result)
            if input_tokens is not None:
                values["input_tokens"] = input_tokens
                given.add("input_tokens")
                trusted = type(input_tokens) is int
            if output_tokens is not None:
                values["output_tokens"] = output_tokens
                given.add("output_tokens")
                trusted = trusted and type(output_tokens) is int
        if path.failed:
            values["fallback"] = True
            values["fallback_from"] = path.failed
            values["fallback_reason"] = path.reason
            given.update(_FALLBACK_FIELDS)
        if streamed:
            values["streamed"] = True
            given.add("streamed")
        if error is not None:
            values["error"] = f"{type(error).__name__}: {error}"
            given.add("error")
        if result is not None and (type(result) is entry.result or isinstance(result, BaseModel)):
            values["output"] = result
            given.add("output")
        if trusted:
            payload = _used_payload(values, given)
        else:  # a provider's own usage object with odd token counts is checked (coerced)
            payload = ModelUsedPayload.model_validate({name: values[name] for name in given})
        return self.events.emit(MODEL_USED, payload)


@dataclass(slots=True)
class _Path:
    """The providers a call passed over so far, and why the first one was."""

    failed: tuple[str, ...] = ()
    reason: str | None = None
    error: str = ""

    @classmethod
    def of(cls, skipped: Sequence[_Entry]) -> _Path:
        if not skipped:
            return cls()
        first = skipped[0].circuit
        return cls(
            tuple(e.provider for e in skipped),
            "circuit_open",
            f"skipped after {first.failures} failures in a row (circuit open)",
        )

    def add(self, entry: _Entry, exc: BaseException) -> BaseException:
        if not self.failed:
            self.reason = reason_of(exc)
            self.error = f"{type(exc).__name__}: {exc}"
        self.failed = (*self.failed, entry.provider)
        return exc

    def fell_back(self, entry: _Entry, caller: CallContext | None) -> None:
        """Another provider answers: a WARNING, and a mark for the caller's reply."""
        model_type = entry.handler.model_type.name
        reason = self.reason or "error"
        logger.bind(plugin="host").warning(
            "{}: provider {} was passed over ({}: {}); {} answered instead (fallback)",
            model_type,
            self.failed[0],
            reason,
            self.error,
            entry.provider,
        )
        if caller is not None:
            caller.fallbacks.append(
                FallbackMark(model_type, self.failed[0], entry.provider, reason)
            )


_deadlines.watch(ModelRegistry.use_model.__code__)
_expired = _deadlines.expired
_ensure_sweeper = _deadlines.ensure
_thread = threading.get_ident
_withdraw = _deadlines.withdraw
_timed_out = _deadlines.timed_out

_NO_PATH = _Path()
"""The path of a call that passed nobody over yet (shared: replaced, never added to)."""


def _for_caller(
    model_type: ModelType[P, Any], params: P, caller: CallContext | None
) -> tuple[P, str | None]:
    """`params` with the model name the caller's agent asks for `model_type` (when the params
    take a ``model`` and the call did not name one), and the provider the agent prefers."""
    if caller is None:
        return params, None
    name = caller.model_names.get(model_type.name) if caller.model_names else None
    if name is not None and getattr(params, "model", name) is None:
        params = params.model_copy(update={"model": name})
    return params, caller.provider


_CALLER_FIELDS: Final = ("agent_id", "room_id", "message_id")
_FALLBACK_FIELDS: Final = ("fallback", "fallback_from", "fallback_reason")
_USED_DEFAULTS: Final = {
    name: info.get_default() for name, info in ModelUsedPayload.model_fields.items()
}
"""Every field of ``model:used`` (the required ones too, as placeholders `_report` replaces)."""
_new_payload = ModelUsedPayload.__new__
# pydantic's own slots, set through their descriptors (cheaper than object.__setattr__)
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def _used_payload(values: dict[str, Any], given: set[str]) -> ModelUsedPayload:
    """The ``model:used`` payload of `values` (every field; `given`: those that differ from
    their defaults), built by `ModelRegistry._report` from values of the registry's own of the
    fields' types: names, a duration, the call's typed params, a result of the model type's
    result type, the call context's ids. It is assembled as pydantic's ``model_construct``
    would, without validating it again (validating cost about 1.5 µs a call, a third of the
    registry's overhead in the host); `_report` validates what it cannot vouch for (token
    counts). tests/models/test_registry_payloads.py checks it equals the validated payload."""
    payload = _new_payload(ModelUsedPayload)
    _set_dict(payload, values)
    _set_fields_set(payload, given)
    _set_extra(payload, None)
    _set_private(payload, None)
    return payload


def _one_chunk(entry: _Entry, result: object) -> TextChunk:
    """A non-streaming provider's whole answer as the one chunk of its stream."""
    text = getattr(result, "text", None)
    if not isinstance(text, str):
        raise ModelError(
            f"provider {entry.provider} cannot stream {entry.handler.model_type.name}: "
            f"its result {type(result).__name__} has no text"
        )
    return TextChunk(
        text=text,
        finish_reason=getattr(result, "finish_reason", None) or "stop",
        usage=getattr(result, "usage", None),
    )


def _coerce(model_type: ModelType[P, Any], params: object) -> P:
    """Params from untyped code as the model type's params model, or an error naming the field."""
    expected = model_type.params
    if isinstance(params, expected):
        return params
    data: object = params.model_dump() if isinstance(params, BaseModel) else params
    if isinstance(data, str) and "prompt" in expected.model_fields:
        data = {"prompt": data}
    if isinstance(data, str) and "text" in expected.model_fields:
        data = {"text": data}
    if not isinstance(data, dict):
        raise InvalidModelParamsError(
            f"{model_type.name} takes {expected.__name__}, got {type(params).__name__}"
        )
    try:
        return expected.model_validate(data)
    except ValidationError as exc:
        problems = field_problems(exc)
        raise InvalidModelParamsError(
            f"{model_type.name}: invalid {expected.__name__} ({problems})"
        ) from exc


def _exhausted(
    model_type: ModelType[Any, Any], tried: Iterable[_Entry], last: BaseException | None
) -> ModelCallError:
    names = ", ".join(e.provider for e in tried)
    error = ModelCallError(
        f"every provider of {model_type.name} failed ({names}); last error: {last!r}",
        provider=names,
        retryable=True,
    )
    error.__cause__ = last
    return error
