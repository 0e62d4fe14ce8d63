"""Streamed chat completions of the ``openai`` plugin: the server-sent event stream opened with
retries (asking again without ``stream_options`` where a server refuses it), read into
`TextChunk` objects, a broken or malformed stream turned into a retryable `ModelCallError`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from contracts.models import ModelCallError, TextChunk, TextParams, Usage

from .responses import transport_error, usage_of
from .retry import with_retries

if TYPE_CHECKING:
    from httpx_sse import EventSource

    from .plugin import OpenAIPlugin

__all__ = ["open_stream", "stream_chat"]


async def open_stream(
    plugin: OpenAIPlugin, body: dict[str, Any], model_type: str, asked: str | None
) -> tuple[AsyncExitStack, EventSource]:
    """Open the event stream (retried like `OpenAIPlugin._post` until it answers 200); the caller
    closes the returned stack."""
    import httpx
    from httpx_sse import aconnect_sse

    async def once() -> tuple[AsyncExitStack, EventSource]:
        stack = AsyncExitStack()
        try:
            source = await stack.enter_async_context(
                aconnect_sse(plugin.client, "POST", "chat/completions", json=body)
            )
            response = source.response
            if response.status_code < 400:
                return stack, source
            detail = (await response.aread()).decode(errors="replace")
        except httpx.HTTPError as exc:
            await stack.aclose()
            raise transport_error(exc, "chat/completions stream", plugin.settings.base_url) from exc
        except BaseException:
            await stack.aclose()
            raise
        await stack.aclose()
        refused = response.status_code == 400 and "stream_options" in detail
        if refused and "stream_options" in body:
            # Servers predating usage in streams (older Azure API versions, some local
            # servers) refuse the option: ask again without it, from now on.
            plugin._stream_usage = False
            del body["stream_options"]
            plugin.log.info(
                "{} refuses stream_options: streams carry no usage",
                plugin.settings.base_url,
            )
            return await once()
        await plugin._refused(response, detail, model_type, asked)

    return await with_retries(
        once, plugin.settings.retry, plugin.log, f"{model_type} chat/completions stream"
    )


async def stream_chat(
    plugin: OpenAIPlugin, params: TextParams, model_type: str
) -> AsyncIterator[TextChunk]:
    """`plugin`'s chat completion for `params` as a stream of chunks (the last one carries the
    finish reason and, when the server sends it, the usage)."""
    import httpx
    from httpx_sse import SSEError

    model = plugin._model(model_type, params.model)
    body = {**plugin._chat_body(params, model), "stream": True}
    if plugin._stream_usage:
        body["stream_options"] = {"include_usage": True}
    stack, source = await open_stream(plugin, body, model_type, params.model)
    index = 0
    async with stack:
        try:
            finish: str | None = None
            usage: Usage | None = None
            async for event in source.aiter_sse():
                if event.data.strip() == "[DONE]":
                    break
                chunk = json.loads(event.data)
                if chunk.get("usage"):
                    usage = usage_of(chunk["usage"])
                for choice in chunk.get("choices") or ():
                    finish = choice.get("finish_reason") or finish
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield TextChunk(text=text, index=index)
                        index += 1
            yield TextChunk(text="", index=index, finish_reason=finish or "stop", usage=usage)
        except httpx.TimeoutException as exc:
            raise ModelCallError(
                f"stream timed out after {index} chunks",
                provider="openai",
                retryable=True,
                reason="timeout",
            ) from exc
        except httpx.TransportError as exc:
            raise ModelCallError(
                f"the stream from {plugin.settings.base_url} broke off after {index} chunks: {exc}",
                provider="openai",
                retryable=True,
                reason="stream_cut",
            ) from exc
        except (SSEError, json.JSONDecodeError) as exc:
            raise ModelCallError(
                f"malformed stream: {exc}",
                provider="openai",
                retryable=True,
                reason="bad_response",
            ) from exc
