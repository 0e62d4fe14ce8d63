"""The ``openai`` plugin: any OpenAI-compatible endpoint (OpenAI, Ollama, vLLM, llama.cpp server).

Chat completions (streamed with server-sent events) answer TEXT_SMALL / TEXT_LARGE, embeddings
answer TEXT_EMBEDDING, and JSON-schema structured output answers OBJECT_SMALL / OBJECT_LARGE.
At setup the server's models are listed (``GET /models``): a configured name it does not
serve is reported with the setting to change and the names it offers (closest first), and
calls for that name fail at once, so the registry's fallback (ELIZA) answers, marked as such.
Rate limits (429), 408/409/425, 5xx and timeouts are retried (`retry.with_retries`, honouring
``Retry-After``), then left to the registry's fallback; other 4xx (bad request, auth) are
raised. The API key is a `SecretStr`: it goes into the Authorization header and nowhere else.

This module is the plugin (set-up, the name check, requests, the handlers); its config is in
`settings`, reading answers and errors in `responses`, streamed chat in `streaming`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from pydantic import BaseModel, ValidationError

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
    ModelError,
    ModelHandler,
    ObjectParams,
    ObjectResult,
    TextChunk,
    TextParams,
    TextResult,
)
from contracts.plugin import Manifest, Plugin
from contracts.vector import Vector

from .catalog import ModelCatalog, served_names
from .responses import fail, json_object, transport_error, usage_of
from .retry import parse_retry_after, with_retries
from .settings import MODEL_TYPES, OpenAIModels, OpenAISettings
from .streaming import stream_chat

if TYPE_CHECKING:
    import httpx

# httpx and httpx_sse (~100 ms) are imported where requests are made, not at start-up: an
# unconfigured plugin (the default) makes none.

__all__ = ["OpenAIModels", "OpenAIPlugin", "OpenAISettings"]


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
        self.catalog = ModelCatalog()
        """The names the server serves (known once ``GET /models`` answered)."""

    async def setup(self) -> None:
        if not self.configured:
            self.log.info(
                "not configured (no plugins.openai.api_key or base_url): registering no models"
            )
            return
        import httpx

        headers = {"Accept": "application/json"}
        if self.settings.api_key is not None:
            headers["Authorization"] = f"Bearer {self.settings.api_key.get_secret_value()}"
        self._client = httpx.AsyncClient(
            base_url=self.settings.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(self.settings.timeout, connect=self.settings.connect_timeout),
        )
        self.log.info("openai-compatible endpoint {}", self.settings.base_url)
        if self.settings.check_models != "off":
            await self.list_models()
            self._check_configured()

    async def list_models(self) -> bool:
        """Read the served names (``GET /models``) into `catalog`; False when the server does
        not answer with a listing (then names are not checked)."""
        import httpx

        url = f"{self.settings.base_url.rstrip('/')}/models"
        try:
            # a short read timeout: a server that hangs must not hold the host's start
            wait = httpx.Timeout(
                min(self.settings.timeout, 10.0), connect=self.settings.connect_timeout
            )
            response = await self.client.get("models", timeout=wait)
        except httpx.HTTPError as exc:
            self.log.warning(
                "cannot list the models of {}: {}; model names are not checked", url, exc
            )
            return False
        names = None
        if response.status_code < 400:
            try:
                names = served_names(response.json())
            except ValueError:
                names = None
        if names is None:
            self.log.warning(
                "{} answered {} without a model listing; model names are not checked",
                url,
                response.status_code,
            )
            return False
        self.catalog.update(names)
        self.log.info("{} serves {} models", url, len(names))
        return True

    def _check_configured(self) -> None:
        """Report each model type whose configured name the server does not serve."""
        if not self.catalog.known:
            return
        problems = []
        for model_type in MODEL_TYPES:
            name, source = self.settings.model_for(model_type)
            inherited = model_type.startswith("object_") and source != f"models.{model_type}"
            if not inherited and not self.catalog.serves(name):  # said once, for its text type
                problems.append(self._not_served(model_type, None))
        if not problems:
            return
        if self.settings.check_models == "fail":
            raise ModelError("; ".join(problems) + " (or set plugins.openai.check_models)")
        for problem in problems:
            self.log.warning("{}: its calls go to the fallback provider", problem)

    def _not_served(self, model_type: str, asked: str | None, answer: str | None = None) -> str:
        """Why `model_type`'s name (`asked` by the call, else the configured one) is refused;
        `answer`: the server's 404 text when it gives no model list."""
        url = self.settings.base_url.rstrip("/")
        name = asked or self.settings.model_for(model_type)[0]
        offer = (
            self.catalog.offer(name)
            if answer is None
            else f"(no model list; it answered 404: {answer[:200].strip()})"
        )
        setting = f"plugins.openai.models.{model_type}"
        variable = f"AGENTHOST_{setting.upper().replace('.', '__')}"
        if asked is not None:
            return (
                f"{model_type}: model {asked!r}, asked for by the call (the character's"
                f" settings.model / settings.models), is not served by {url}; it serves:"
                f" {offer}"
            )
        source = self.settings.model_for(model_type)[1]
        explicit = "." in source or source in self.settings.model_fields_set
        origin = f"plugins.openai.{source}" if explicit else "the default"
        return (
            f"{model_type}: model {name!r} ({origin}) is not served by {url}; set {setting}"
            f" ({variable}) to one it serves: {offer}"
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

    def _model(self, model_type: str, asked: str | None) -> str:
        """The model name to send, or a retryable error (the fallback answers) when the server
        is known not to serve it."""
        name = asked or self.settings.model_for(model_type)[0]
        if not self.catalog.serves(name):
            raise ModelCallError(
                self._not_served(model_type, asked),
                provider="openai",
                retryable=True,
                reason="model_not_served",
            )
        return name

    async def _refused(
        self, response: httpx.Response, detail: str, model_type: str, asked: str | None
    ) -> NoReturn:
        """Raise the error for an HTTP error status. A 404 naming the model (Ollama: "model
        'x' not found") re-reads the listing and names the setting and what is served."""
        wanted = asked or self.settings.model_for(model_type)[0]
        if response.status_code == 404 and "model" in detail.lower():
            listed = await self.list_models()
            if not listed or not self.catalog.serves(wanted):
                raise ModelCallError(
                    self._not_served(model_type, asked, None if listed else detail),
                    provider="openai",
                    retryable=True,
                    status=404,
                    reason="model_not_served",
                )
        fail(response.status_code, detail, parse_retry_after(response.headers))

    async def _post(
        self, path: str, body: dict[str, Any], model_type: str, asked: str | None
    ) -> dict[str, Any]:
        import httpx

        async def once() -> dict[str, Any]:
            try:
                response = await self.client.post(path, json=body)
            except httpx.HTTPError as exc:
                raise transport_error(exc, path, self.settings.base_url) from exc
            if response.status_code >= 400:
                await self._refused(response, response.text, model_type, asked)
            return json_object(path, response, self.settings.base_url)

        return await with_retries(once, self.settings.retry, self.log, f"{model_type} {path}")

    def _chat_body(self, params: TextParams, model: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": [m.model_dump() for m in params.as_messages()],
        }
        if params.temperature is not None:
            body["temperature"] = params.temperature
        if params.max_tokens is not None:
            body["max_tokens"] = params.max_tokens
        if params.stop:
            body["stop"] = list(params.stop)
        return body

    async def _chat(self, params: TextParams, model_type: str) -> TextResult:
        model = self._model(model_type, params.model)
        data = await self._post(
            "chat/completions", self._chat_body(params, model), model_type, params.model
        )
        try:
            choice = data["choices"][0]
            return TextResult(
                text=choice["message"].get("content") or "",
                finish_reason=choice.get("finish_reason"),
                usage=usage_of(data.get("usage")),
                model=data.get("model"),
            )
        except (KeyError, IndexError, TypeError) as exc:
            raise ModelCallError(
                f"unexpected chat completion response: {exc!r}",
                provider="openai",
                retryable=True,
                reason="bad_response",
            ) from exc

    # handlers -------------------------------------------------------------------------------

    async def text_small(self, params: TextParams) -> TextResult:
        return await self._chat(params, "text_small")

    async def text_large(self, params: TextParams) -> TextResult:
        return await self._chat(params, "text_large")

    def stream_small(self, params: TextParams) -> AsyncIterator[TextChunk]:
        return stream_chat(self, params, "text_small")

    def stream_large(self, params: TextParams) -> AsyncIterator[TextChunk]:
        return stream_chat(self, params, "text_large")

    async def embed(self, params: EmbeddingParams) -> EmbeddingResult:
        model = self._model("text_embedding", params.model)
        body: dict[str, Any] = {"model": model, "input": params.texts}
        if self.settings.embedding_dimensions is not None:
            body["dimensions"] = self.settings.embedding_dimensions
        data = await self._post("embeddings", body, "text_embedding", params.model)
        rows = sorted(data.get("data") or [], key=lambda row: row.get("index", 0))
        if len(rows) != len(params.texts):
            raise ModelCallError(
                f"asked {len(params.texts)} embeddings, got {len(rows)}",
                provider="openai",
                retryable=True,
                reason="bad_response",
            )
        try:
            vectors = [Vector(row["embedding"]) for row in rows]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelCallError(
                f"the embeddings answer holds no valid vector: {exc}",
                provider="openai",
                retryable=True,
                reason="bad_response",
            ) from exc
        return EmbeddingResult(
            vectors=vectors,
            usage=usage_of(data.get("usage")),
            model=data.get("model"),
        )

    async def _object(self, params: ObjectParams, model_type: str) -> ObjectResult:
        model = self._model(model_type, params.model)
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
        data = await self._post("chat/completions", body, model_type, params.model)
        try:
            content = data["choices"][0]["message"]["content"]
            parsed = json.loads(content)
        except (KeyError, IndexError, TypeError, json.JSONDecodeError) as exc:
            raise ModelCallError(
                f"the model did not answer JSON: {exc}",
                provider="openai",
                retryable=True,
                reason="bad_response",
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
                    reason="bad_response",
                ) from exc
        return ObjectResult(data=parsed, value=value, usage=usage_of(data.get("usage")))

    async def object_small(self, params: ObjectParams) -> ObjectResult:
        return await self._object(params, "object_small")

    async def object_large(self, params: ObjectParams) -> ObjectResult:
        return await self._object(params, "object_large")

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
