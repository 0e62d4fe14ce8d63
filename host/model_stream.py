"""Streaming model calls (`ModelRegistry.stream_model`): a provider's chunks, or a
non-streaming provider's answer as one chunk, each wait under the registry's timeout; falls
back like `use_model` only until the first chunk is out, and reports the whole text."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, TypeVar

from contracts.models import ModelError, ModelParams, ModelType, TextChunk
from host.model_context import call_context, coerce_params, for_caller
from host.model_failures import FailurePath, exhausted, is_retryable
from host.model_providers import ProviderEntry
from host.model_report import report

if TYPE_CHECKING:
    from host.models import ModelRegistry

__all__ = ["stream_model"]

P = TypeVar("P", bound=ModelParams)
T = TypeVar("T")


async def stream_model(
    registry: ModelRegistry, model_type: ModelType[P, Any], params: P, provider: str | None
) -> AsyncIterator[TextChunk]:
    """`registry.stream_model`: see there."""
    if type(params) is not model_type.params:
        params = coerce_params(model_type, params)
    params, prefer = for_caller(model_type, params, call_context.get())
    choice = registry.choice
    candidates, skipped = choice.candidates(model_type, provider, prefer)
    events = registry.events
    path = FailurePath.of(skipped)
    last: BaseException | None = None
    for entry in candidates:
        started = time.perf_counter()
        yielded = False
        final: TextChunk | None = None
        texts: list[str] = []
        try:
            # closed with this stream: a consumer that stops early closes the provider's
            # stream now, not whenever the garbage collector finalizes it
            async with aclosing(_chunks(registry, entry, params)) as chunks:
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
                await report(events, entry, started, path, params, error=exc, streamed=True)
            if not is_retryable(exc):
                raise
            choice.failed(entry, exc)  # a stream cut mid-way counts towards the breaker too
            if yielded:
                raise  # part of the answer is out: too late to ask another provider
            last = path.add(entry, exc)
            continue
        if entry.circuit.failures:
            choice.succeeded(entry)
        if path.failed and not yielded:  # an empty answer from the fallback: marked too
            path.fell_back(entry, call_context.get())
        if events is not None:
            # the recorded output is the whole text (replay answers with it), not the last
            # chunk's
            whole = None if final is None else final.model_copy(update={"text": "".join(texts)})
            await report(events, entry, started, path, params, result=whole, streamed=True)
        return
    raise exhausted(model_type, candidates, last)


async def _chunks(
    registry: ModelRegistry, entry: ProviderEntry, params: Any
) -> AsyncGenerator[TextChunk, None]:
    stream = entry.handler.stream
    if stream is None:
        yield _one_chunk(entry, await _within_timeout(registry, entry, entry.call(params)))
        return
    chunks = stream(params)
    try:
        while True:
            try:
                chunk = await _within_timeout(registry, entry, anext(chunks))
            except StopAsyncIteration:
                return
            yield chunk
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()


async def _within_timeout(registry: ModelRegistry, entry: ProviderEntry, step: Awaitable[T]) -> T:
    """Await `step`, turning the registry's deadline into a `TimeoutError`."""
    deadline = registry.deadlines.start(registry.settings.timeout)
    try:
        try:
            return await step
        finally:
            timed_out = registry.deadlines.finish(deadline)
    except asyncio.CancelledError:
        if timed_out:
            limit = registry.settings.timeout
            raise TimeoutError(f"{entry.provider} took over {limit}s") from None
        raise


def _one_chunk(entry: ProviderEntry, result: object) -> TextChunk:
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
