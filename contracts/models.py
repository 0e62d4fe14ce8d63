"""Typed model calls: each `ModelType[P, R]` names a kind of model call, its params and its result.

``await runtime.use_model(TEXT_LARGE, TextParams(prompt="Hello"))`` is checked by mypy: the
params must be `TextParams` and the result is a `TextResult`. Plugins answer model types by
returning `ModelHandler` objects from ``models()``; the host's registry picks one by priority
(or a config pin), falls back on retryable failures and emits ``model:used`` for each call.
Plugins declare their own model types the same way as the builtin ones::

    IMAGE_DESCRIPTION = ModelType("image_description", ImageParams, TextResult)
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_validator

from contracts.errors import AgentHostError
from contracts.tokens import Token
from contracts.vector import Vector

__all__ = [
    "MODELS",
    "OBJECT_LARGE",
    "OBJECT_SMALL",
    "TEXT_EMBEDDING",
    "TEXT_LARGE",
    "TEXT_SMALL",
    "ChatMessage",
    "EmbeddingKind",
    "EmbeddingParams",
    "EmbeddingResult",
    "InvalidModelParamsError",
    "ModelCallError",
    "ModelError",
    "ModelHandler",
    "ModelParams",
    "ModelRuntime",
    "ModelSettings",
    "ModelType",
    "NoModelHandlerError",
    "ObjectParams",
    "ObjectResult",
    "TextChunk",
    "TextParams",
    "TextResult",
    "Usage",
    "model_type_named",
]


class ModelParams(BaseModel):
    """Base of every params model: unknown fields are an error (a typo is not silently dropped)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


P = TypeVar("P", bound=ModelParams)
R = TypeVar("R")

_registry: dict[str, ModelType[Any, Any]] = {}
_registry_lock = threading.Lock()


class ModelError(AgentHostError):
    """Base of the model errors."""


class NoModelHandlerError(ModelError, LookupError):
    """No handler answers a model type (or the provider asked for is not registered for it)."""


class InvalidModelParamsError(ModelError, ValueError):
    """Params that are not the model type's params model (from untyped code), naming the field."""


class ModelCallError(ModelError):
    """A provider failed. `retryable` failures (timeout, connection, rate limit, 5xx) make the
    registry try the next provider; others (bad request, auth) are raised at once.

    `reason` is a short fixed word for metrics and the reply's fallback mark (``rate_limited``,
    ``server_error``, ``timeout``, ``unreachable``, ``model_not_served``, ...; None: derived
    from `status`); `retry_after` the seconds the server asked to wait (``Retry-After``)."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        retryable: bool,
        status: int | None = None,
        reason: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.retryable = retryable
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True, eq=False)
class ModelType(Generic[P, R]):
    """A kind of model call: its name, params model and result type. Names are unique."""

    name: str
    params: type[P]
    result: type[R]
    description: str = ""
    operation: str | None = None
    """The OpenTelemetry ``gen_ai.operation.name`` of these calls (``chat``, ``embeddings``,
    ``text_completion``, ...) that the model metrics carry; None: the model type's name."""

    def __post_init__(self) -> None:
        with _registry_lock:
            known = _registry.get(self.name)
            if known is not None and not (
                _same_type(known.params, self.params) and _same_type(known.result, self.result)
            ):
                raise ModelError(f"model type {self.name!r} is already declared differently")
            _registry[self.name] = self

    def __repr__(self) -> str:
        return f"ModelType({self.name!r})"


def _same_type(known: type[Any], new: type[Any]) -> bool:
    """The same class, or the same class re-created by a re-import (hot reload)."""
    return known is new or (
        known.__module__ == new.__module__ and known.__qualname__ == new.__qualname__
    )


def model_type_named(name: str) -> ModelType[Any, Any] | None:
    """The declared model type called `name` (config pins name model types by their name)."""
    return _registry.get(name)


# params and results --------------------------------------------------------------------------


class ChatMessage(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Literal["system", "user", "assistant", "tool"]
    content: str


class Usage(BaseModel):
    model_config = ConfigDict(frozen=True)

    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)


class TextParams(ModelParams):
    """A text generation: a `prompt` or a list of chat `messages` (at least one of them)."""

    prompt: str | None = None
    messages: tuple[ChatMessage, ...] = ()
    system: str | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: tuple[str, ...] = ()
    model: str | None = None
    """A provider-specific model name overriding the provider's configured one."""

    @model_validator(mode="after")
    def _has_input(self) -> TextParams:
        if self.prompt is None and not self.messages:
            raise ValueError("give a prompt or messages")
        return self

    def as_messages(self) -> list[ChatMessage]:
        """The conversation a chat model receives: system, then messages, then the prompt."""
        out = [ChatMessage(role="system", content=self.system)] if self.system else []
        out += self.messages
        if self.prompt is not None:
            out.append(ChatMessage(role="user", content=self.prompt))
        return out


class TextResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    usage: Usage | None = None
    finish_reason: str | None = None
    model: str | None = None


class TextChunk(BaseModel):
    """One piece of a streamed text; the last one carries `finish_reason` (and usage if known)."""

    model_config = ConfigDict(frozen=True)

    text: str
    index: int = 0
    finish_reason: str | None = None
    usage: Usage | None = None


EmbeddingKind = Literal["query", "passage"]
"""What a text is embedded for: searching (``query``) or being found (``passage``)."""


class EmbeddingParams(ModelParams):
    """One text or a batch of texts to embed.

    `kind` says what the texts are for: ``passage`` for what is stored and searched (memories,
    knowledge chunks), ``query`` for what is searched with (the incoming message). Asymmetric
    models (E5: ``query: `` / ``passage: `` prefixes) embed the two differently and lose recall
    when they are mixed up; symmetric ones ignore it.
    """

    text: str | tuple[str, ...]
    kind: EmbeddingKind = "passage"
    model: str | None = None
    """A provider-specific model name overriding the provider's configured one."""

    @property
    def texts(self) -> list[str]:
        return [self.text] if isinstance(self.text, str) else list(self.text)


class EmbeddingResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    vectors: list[Vector]
    """One vector per input text, in order (float32 `Vector`s; lists of numbers are converted,
    and ``Vector.rows(matrix)`` turns a model's output matrix into rows without a copy each)."""
    usage: Usage | None = None
    model: str | None = None
    """The model that made the vectors (stores record it: vectors of two models never mix)."""

    @property
    def vector(self) -> Vector:
        """The first (for a single text, the only) vector."""
        return self.vectors[0]


class ObjectParams(ModelParams):
    """A structured generation: the answer must validate against `output` (a pydantic model
    class) or `json_schema`."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    prompt: str
    output: type[BaseModel] | None = None
    json_schema: Mapping[str, Any] | None = None
    system: str | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1)
    model: str | None = None
    """A provider-specific model name overriding the provider's configured one."""

    @model_validator(mode="after")
    def _has_schema(self) -> ObjectParams:
        if self.output is None and self.json_schema is None:
            raise ValueError("give an output model or a json_schema")
        return self

    @field_serializer("output")
    def _output_name(self, output: type[BaseModel] | None) -> str | None:
        return None if output is None else f"{output.__module__}.{output.__qualname__}"

    def schema_dict(self) -> dict[str, Any]:
        if self.output is not None:
            return self.output.model_json_schema()
        return dict(self.json_schema or {})


class ObjectResult(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    data: dict[str, Any]
    """The validated object as JSON data."""
    value: BaseModel | None = None
    """The object as an instance of ``params.output`` when one was given."""
    usage: Usage | None = None


TEXT_SMALL = ModelType(
    "text_small", TextParams, TextResult, "fast, cheap text generation", operation="chat"
)
TEXT_LARGE = ModelType(
    "text_large", TextParams, TextResult, "the agent's main text model", operation="chat"
)
TEXT_EMBEDDING = ModelType(
    "text_embedding", EmbeddingParams, EmbeddingResult, "text to vectors", operation="embeddings"
)
OBJECT_SMALL = ModelType(
    "object_small", ObjectParams, ObjectResult, "a validated object, fast", operation="chat"
)
OBJECT_LARGE = ModelType(
    "object_large", ObjectParams, ObjectResult, "a validated object", operation="chat"
)


# handlers and the runtime ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelHandler(Generic[P, R]):
    """A plugin's answer to one model type. `stream` is optional: without it, a streamed call
    gets the whole text as one chunk."""

    model_type: ModelType[P, R]
    handler: Callable[[P], Awaitable[R]]
    stream: Callable[[P], AsyncIterator[TextChunk]] | None = None
    priority: int = 0
    """Higher is tried first; equal priorities in registration order."""
    provider: str | None = None
    """The provider name calls and pins use; defaults to the plugin's name."""


@runtime_checkable
class ModelRuntime(Protocol):
    """Calling models (the MODELS service; agent runtimes expose the same two methods)."""

    async def use_model(
        self, model_type: ModelType[P, R], params: P, *, provider: str | None = None
    ) -> R: ...

    def stream_model(
        self, model_type: ModelType[P, R], params: P, *, provider: str | None = None
    ) -> AsyncIterator[TextChunk]: ...


MODELS: Token[ModelRuntime] = Token("models", ModelRuntime)


class ModelSettings(BaseModel):
    """Config section ``models``."""

    model_config = ConfigDict(extra="forbid")

    pins: dict[str, str] = Field(default_factory=dict)
    """Model type name -> provider that must answer it (e.g. ``text_large: openai``)."""
    timeout: float = Field(default=60.0, gt=0)
    """Seconds before a call is abandoned (a retryable failure)."""
    breaker_failures: int = Field(default=3, ge=1)
    """Consecutive retryable failures that open a provider's circuit."""
    breaker_cooldown: float = Field(default=30.0, gt=0)
    """Seconds a provider with an open circuit is skipped before it is tried again."""
