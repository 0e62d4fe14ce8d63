"""The ``openai`` plugin: any OpenAI-compatible endpoint (OpenAI, Ollama, vLLM, llama.cpp server).

Chat completions (streamed with server-sent events) answer TEXT_SMALL / TEXT_LARGE, embeddings
answer TEXT_EMBEDDING, and JSON-schema structured output answers OBJECT_SMALL / OBJECT_LARGE.
Failures map to the registry's fallback rules: timeouts, connection errors, 408, 409, 429 and
5xx are retryable (the next provider, e.g. ELIZA, answers); other 4xx (bad request, auth) are
not. The API key is a `SecretStr`: it goes into the Authorization header and nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar, NoReturn

import httpx
from httpx_sse import SSEError, aconnect_sse
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from contracts.logging import Logger
from contracts.models import (
    OBJECT_LARGE,
    OBJECT_SMALL,
    TEXT_EMBEDDING,
    TEXT_LARGE,
    TEXT_SMALL,
    EmbeddingParams,
    EmbeddingResult,
    ModelCallError,
    ModelHandler,
    ObjectParams,
    ObjectResult,
    TextChunk,
    TextParams,
    TextResult,
    Usage,
)
from contracts.plugin import Manifest, Plugin

__all__ = ["OpenAIPlugin", "OpenAISettings"]

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


class OpenAISettings(BaseModel):
    """Config section ``plugins.openai``; the key from ``AGENTHOST_PLUGINS__OPENAI__API_KEY``."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = "https://api.openai.com/v1"
    api_key: SecretStr | None = None
    small_model: str = "gpt-4o-mini"
    large_model: str = "gpt-4o"
    embedding_model: str = "text-embedding-3-small"
    embedding_dimensions: int | None = Field(default=None, ge=1)
    """Ask for this many dimensions (models that support it); None: the model's own."""
    timeout: float = Field(default=60.0, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    priority: int = 0
    """Model handler priority (ELIZA is -100: it stays the fallback)."""


class OpenAIPlugin(Plugin):
    """Talks the OpenAI HTTP protocol with httpx."""

    manifest: ClassVar[Manifest] = Manifest(
        name="openai",
        description="Any OpenAI-compatible endpoint: chat (streamed), embeddings, JSON output",
        settings=OpenAISettings,
    )

    def __init__(self, settings: OpenAISettings | None, log: Logger) -> None:
        self.settings = settings or OpenAISettings()
        self.log = log
        self._client: httpx.AsyncClient | None = None
        self._stream_usage = True  # ask streams for their token usage (stream_options)

    async def setup(self) -> None:
        headers = {"Accept": "application/json"}
        if self.settings.api_key is not None:
            headers["Authorization"] = f"Bearer {self.settings.api_key.get_secret_value()}"
        self._client = httpx.AsyncClient(
            base_url=self.settings.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(self.settings.timeout, connect=self.settings.connect_timeout),
        )
        if self.configured:
            self.log.info("openai-compatible endpoint {}", self.settings.base_url)
        else:
            self.log.info(
                "not configured (no plugins.openai.api_key or base_url): registering no models"
            )

    async def teardown(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise ModelCallError(
                "the openai plugin is not set up", provider="openai", retryable=True
            )
        return self._client

    # requests -------------------------------------------------------------------------------

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self.client.post(path, json=body)
        except httpx.TimeoutException as exc:
            raise ModelCallError(f"{path} timed out", provider="openai", retryable=True) from exc
        except httpx.TransportError as exc:
            raise ModelCallError(
                f"cannot reach {self.settings.base_url}: {exc}", provider="openai", retryable=True
            ) from exc
        if response.status_code >= 400:
            _fail(response.status_code, response.text)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            # e.g. a base_url that serves a web page: retryable, so another provider answers
            kind = response.headers.get("content-type") or "no content type"
            raise ModelCallError(
                f"{self.settings.base_url.rstrip('/')}/{path} answered {response.status_code}"
                f" with {kind}, not a JSON object: is base_url an OpenAI-compatible API"
                " (it usually ends in /v1)?",
                provider="openai",
                retryable=True,
                status=response.status_code,
            )
        return data

    def _chat_body(self, params: TextParams, model: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": params.model or model,
            "messages": [m.model_dump() for m in params.as_messages()],
        }
        if params.temperature is not None:
            body["temperature"] = params.temperature
        if params.max_tokens is not None:
            body["max_tokens"] = params.max_tokens
        if params.stop:
            body["stop"] = list(params.stop)
        return body

    async def _chat(self, params: TextParams, model: str) -> TextResult:
        data = await self._post("chat/completions", self._chat_body(params, model))
        try:
            choice = data["choices"][0]
            return TextResult(
                text=choice["message"].get("content") or "",
                finish_reason=choice.get("finish_reason"),
                usage=_usage(data.get("usage")),
                model=data.get("model"),
            )
        except (KeyError, IndexError, TypeError) as exc:
            raise ModelCallError(
                f"unexpected chat completion response: {exc!r}", provider="openai", retryable=True
            ) from exc

    async def _stream(self, params: TextParams, model: str) -> AsyncIterator[TextChunk]:
        body = {**self._chat_body(params, model), "stream": True}
        if self._stream_usage:
            body["stream_options"] = {"include_usage": True}
        index = 0
        try:
            async with aconnect_sse(self.client, "POST", "chat/completions", json=body) as source:
                response = source.response
                if response.status_code >= 400:
                    detail = (await response.aread()).decode(errors="replace")
                    refused = response.status_code == 400 and "stream_options" in detail
                    if refused and "stream_options" in body:
                        # Servers predating usage in streams (older Azure API versions, some
                        # local servers) refuse the option: ask again without it, from now on.
                        self._stream_usage = False
                        self.log.info(
                            "{} refuses stream_options: streams carry no usage",
                            self.settings.base_url,
                        )
                        async for chunk in self._stream(params, model):
                            yield chunk
                        return
                    _fail(response.status_code, detail)
                finish: str | None = None
                usage: Usage | None = None
                async for event in source.aiter_sse():
                    if event.data.strip() == "[DONE]":
                        break
                    chunk = json.loads(event.data)
                    if chunk.get("usage"):
                        usage = _usage(chunk["usage"])
                    for choice in chunk.get("choices") or ():
                        finish = choice.get("finish_reason") or finish
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            yield TextChunk(text=text, index=index)
                            index += 1
                yield TextChunk(text="", index=index, finish_reason=finish or "stop", usage=usage)
        except httpx.TimeoutException as exc:
            raise ModelCallError("stream timed out", provider="openai", retryable=True) from exc
        except httpx.TransportError as exc:
            raise ModelCallError(
                f"cannot reach {self.settings.base_url}: {exc}", provider="openai", retryable=True
            ) from exc
        except (SSEError, json.JSONDecodeError) as exc:
            raise ModelCallError(
                f"malformed stream: {exc}", provider="openai", retryable=True
            ) from exc

    # handlers -------------------------------------------------------------------------------

    async def text_small(self, params: TextParams) -> TextResult:
        return await self._chat(params, self.settings.small_model)

    async def text_large(self, params: TextParams) -> TextResult:
        return await self._chat(params, self.settings.large_model)

    def stream_small(self, params: TextParams) -> AsyncIterator[TextChunk]:
        return self._stream(params, self.settings.small_model)

    def stream_large(self, params: TextParams) -> AsyncIterator[TextChunk]:
        return self._stream(params, self.settings.large_model)

    async def embed(self, params: EmbeddingParams) -> EmbeddingResult:
        body: dict[str, Any] = {"model": self.settings.embedding_model, "input": params.texts}
        if self.settings.embedding_dimensions is not None:
            body["dimensions"] = self.settings.embedding_dimensions
        data = await self._post("embeddings", body)
        rows = sorted(data.get("data") or [], key=lambda row: row.get("index", 0))
        if len(rows) != len(params.texts):
            raise ModelCallError(
                f"asked {len(params.texts)} embeddings, got {len(rows)}",
                provider="openai",
                retryable=True,
            )
        return EmbeddingResult(
            vectors=[[float(x) for x in row["embedding"]] for row in rows],
            usage=_usage(data.get("usage")),
            model=data.get("model"),
        )

    async def _object(self, params: ObjectParams, model: str) -> ObjectResult:
        text = TextParams(
            prompt=params.prompt,
            system=params.system,
            temperature=params.temperature,
            max_tokens=params.max_tokens,
        )
        body = self._chat_body(text, model)
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": params.schema_dict(), "strict": False},
        }
        data = await self._post("chat/completions", body)
        try:
            content = data["choices"][0]["message"]["content"]
            parsed = json.loads(content)
        except (KeyError, IndexError, TypeError, json.JSONDecodeError) as exc:
            raise ModelCallError(
                f"the model did not answer JSON: {exc}", provider="openai", retryable=True
            ) from exc
        value: BaseModel | None = None
        if params.output is not None:
            try:
                value = params.output.model_validate(parsed)
            except ValidationError as exc:
                raise ModelCallError(
                    f"the answer does not match {params.output.__name__}: {exc}",
                    provider="openai",
                    retryable=True,
                ) from exc
        return ObjectResult(data=parsed, value=value, usage=_usage(data.get("usage")))

    async def object_small(self, params: ObjectParams) -> ObjectResult:
        return await self._object(params, self.settings.small_model)

    async def object_large(self, params: ObjectParams) -> ObjectResult:
        return await self._object(params, self.settings.large_model)

    @property
    def configured(self) -> bool:
        """An API key or a non-default endpoint was configured. Installed but unconfigured, the
        plugin answers nothing, so an offline host is not slowed by calls that cannot work."""
        default = OpenAISettings.model_fields["base_url"].default
        return self.settings.api_key is not None or self.settings.base_url != default

    def models(self) -> Sequence[ModelHandler[Any, Any]]:
        if not self.configured:
            return ()
        p = self.settings.priority
        return (
            ModelHandler(TEXT_SMALL, self.text_small, self.stream_small, priority=p),
            ModelHandler(TEXT_LARGE, self.text_large, self.stream_large, priority=p),
            ModelHandler(TEXT_EMBEDDING, self.embed, priority=p),
            ModelHandler(OBJECT_SMALL, self.object_small, priority=p),
            ModelHandler(OBJECT_LARGE, self.object_large, priority=p),
        )


def _usage(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    return Usage(
        input_tokens=int(data.get("prompt_tokens") or 0),
        output_tokens=int(data.get("completion_tokens") or 0),
    )


def _fail(status: int, body: str) -> NoReturn:
    """Raise the error for an HTTP error status (the response text, not the request: no key)."""
    retryable = status in RETRYABLE_STATUS or status >= 500
    detail = body[:300].replace("\n", " ")
    raise ModelCallError(
        f"HTTP {status}: {detail}", provider="openai", retryable=retryable, status=status
    )
