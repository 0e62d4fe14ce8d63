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
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import aclosing
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
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
from host.deadlines import Deadlines
from host.validation import field_problems

__all__ = ["CallContext", "ModelRegistry", "call_context", "is_retryable"]

P = TypeVar("P", bound=ModelParams)
R = TypeVar("R")
T = TypeVar("T")

_order = itertools.count()


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who a model call is made for; ``model:used`` carries it (the audit trail needs it)."""

    agent_id: UUID
    room_id: UUID
    message_id: UUID


call_context: ContextVar[CallContext | None] = ContextVar("agenthost_model_call", default=None)
"""Set by an agent runtime while it processes a message."""


class _LoadedPlugin(Protocol):
    """What the loader hands registrars: the plugin's name and instance."""

    @property
    def name(self) -> str: ...

    @property
    def instance(self) -> Any: ...


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

    def __post_init__(self) -> None:
        self.call = self.handler.handler


def is_retryable(exc: BaseException) -> bool:
    """Whether another provider may succeed where this failure happened."""
    if isinstance(exc, ModelCallError):
        return exc.retryable
    return isinstance(exc, TimeoutError | ConnectionError)


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
        self._circuits: dict[tuple[str, str], _Circuit] = {}
        self._open_circuits = 0
        self._deadlines = Deadlines()

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

    def register_plugin(self, loaded: _LoadedPlugin) -> None:
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
        self, model_type: ModelType[Any, Any], provider: str | None
    ) -> Sequence[_Entry]:
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
            return chosen
        plan = self._plan(model_type.name)
        if not plan:
            raise NoModelHandlerError(
                f"no model handler for {model_type.name}; {self._describe(model_type)}"
            )
        if not self._open_circuits:
            return plan
        now = self.clock()
        ready = [e for e in plan if e.circuit.open_until <= now]
        # every circuit open: try them anyway rather than fail without asking anyone
        return ready or list(plan)

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

        The common case (typed params, no provider asked for, no open circuit, the first
        handler answers) is kept to a plan lookup, the deadline, the call and its report."""
        if type(params) is not model_type.params:
            params = _coerce(model_type, params)
        plan: Sequence[_Entry] | None = None
        if provider is None and not self._open_circuits:
            plan = self._plans.get(model_type.name)
        if not plan:
            plan = self._candidates(model_type, provider)  # an error naming what is registered
        events = self.events
        failed: tuple[str, ...] = ()
        last: BaseException | None = None
        for entry in plan:
            started = time.perf_counter()
            deadline = self._deadlines.start(self.settings.timeout)
            try:
                try:
                    result = await entry.call(params)
                finally:
                    timed_out = self._deadlines.finish(deadline)
            except asyncio.CancelledError:
                if not timed_out:
                    raise
                exc = TimeoutError(f"{entry.provider} took over {self.settings.timeout}s")
                if events is not None:
                    await self._report(entry, started, failed, params, error=exc)
                self._failed(entry, exc)
                last, failed = exc, (*failed, entry.provider)
                continue
            except Exception as exc:
                if events is not None:
                    await self._report(entry, started, failed, params, error=exc)
                if not is_retryable(exc):
                    raise
                self._failed(entry, exc)
                last, failed = exc, (*failed, entry.provider)
                continue
            if type(result) is not model_type.result and not isinstance(result, model_type.result):
                error = ModelError(
                    f"provider {entry.provider} (plugin {entry.owner}) answered {model_type.name} "
                    f"with {type(result).__name__}, not {model_type.result.__name__}"
                )
                if events is not None:
                    await self._report(entry, started, failed, params, error=error)
                raise error
            if entry.circuit.failures:
                self._succeeded(entry)
            if events is not None:
                await self._report(entry, started, failed, params, result=result)
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
        candidates = self._candidates(model_type, provider)
        events = self.events
        failed: tuple[str, ...] = ()
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
                        yielded = True
                        final = chunk
                        texts.append(chunk.text)
                        yield chunk
            except Exception as exc:
                if events is not None:
                    await self._report(entry, started, failed, params, error=exc, streamed=True)
                if not is_retryable(exc):
                    raise
                self._failed(entry, exc)  # a stream cut mid-way counts towards the breaker too
                if yielded:
                    raise  # part of the answer is out: too late to ask another provider
                last, failed = exc, (*failed, entry.provider)
                continue
            if entry.circuit.failures:
                self._succeeded(entry)
            if events is not None:
                # the recorded output is the whole text (replay answers with it), not the last
                # chunk's
                whole = None if final is None else final.model_copy(update={"text": "".join(texts)})
                await self._report(entry, started, failed, params, result=whole, streamed=True)
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

    async def _report(
        self,
        entry: _Entry,
        started: float,
        failed: tuple[str, ...],
        params: BaseModel,
        *,
        result: object = None,
        error: BaseException | None = None,
        streamed: bool = False,
    ) -> None:
        """Emit ``model:used`` for one attempt (callers check that there is a bus)."""
        assert self.events is not None
        # Only the fields that differ from their defaults, validated from a dict: pydantic-core
        # builds that faster than from every keyword (or than model_construct() does).
        fields: dict[str, Any] = {
            "model_type": entry.handler.model_type.name,
            "provider": entry.provider,
            "duration": time.perf_counter() - started,
            "params": params,
        }
        caller = call_context.get()
        if caller is not None:
            fields["agent_id"] = caller.agent_id
            fields["room_id"] = caller.room_id
            fields["message_id"] = caller.message_id
        input_tokens, output_tokens = _usage(result)
        if input_tokens is not None:
            fields["input_tokens"] = input_tokens
        if output_tokens is not None:
            fields["output_tokens"] = output_tokens
        if failed:
            fields["fallback"] = True
            fields["fallback_from"] = failed
        if streamed:
            fields["streamed"] = True
        if error is not None:
            fields["error"] = f"{type(error).__name__}: {error}"
        if isinstance(result, BaseModel):
            fields["output"] = result
        payload = ModelUsedPayload.model_validate(fields)
        await self.events.emit(MODEL_USED, payload)


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
