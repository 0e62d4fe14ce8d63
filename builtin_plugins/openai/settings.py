"""Config of the ``openai`` plugin (``plugins.openai``): endpoint, key, model names per model
type (and the older ``small_model`` / ``large_model`` / ``embedding_model`` they fall back on),
the model-name check, retries and timeouts."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from .retry import RetrySettings

__all__ = ["MODEL_TYPES", "OpenAIModels", "OpenAISettings"]


class OpenAIModels(BaseModel):
    """Config section ``plugins.openai.models``: the model name per model type (None: the
    older ``small_model`` / ``large_model`` / ``embedding_model``; object types take their text
    type's name)."""

    model_config = ConfigDict(extra="forbid")

    text_small: str | None = None
    text_large: str | None = None
    text_embedding: str | None = None
    object_small: str | None = None
    object_large: str | None = None


class OpenAISettings(BaseModel):
    """Config section ``plugins.openai``; the key from ``AGENTHOST_PLUGINS__OPENAI__API_KEY``."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = "https://api.openai.com/v1"
    """The server's API root: OpenAI's, or a compatible one (Ollama ``http://localhost:11434/v1``,
    vLLM ``http://localhost:8000/v1``)."""
    api_key: SecretStr | None = None
    small_model: str = "gpt-4o-mini"
    large_model: str = "gpt-4o"
    embedding_model: str = "text-embedding-3-small"
    embedding_dimensions: int | None = Field(default=None, ge=1)
    """Ask for this many dimensions (models that support it); None: the model's own."""
    models: OpenAIModels = Field(default_factory=OpenAIModels)
    check_models: Literal["fallback", "fail", "off"] = "fallback"
    """A configured name the server does not serve (``GET /models`` at setup): ``fallback``
    logs it and that model type's calls go to the fallback (ELIZA), marked; ``fail`` fails the
    plugin's setup; ``off`` does not list the models."""
    retry: RetrySettings = Field(default_factory=RetrySettings)
    timeout: float = Field(default=60.0, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    priority: int = 0
    """Model handler priority (ELIZA is -100: it stays the fallback)."""

    @field_validator("base_url")
    @classmethod
    def _an_http_url(cls, value: str) -> str:
        """Refused at load (naming the setting), not at the first request."""
        try:
            parts = urlsplit(value.strip())
            _ = parts.port  # raises on a port that is not a number
        except ValueError as exc:
            raise ValueError(f"is not a URL ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "must be an http:// or https:// URL with a host (e.g. http://localhost:11434/v1"
                " for Ollama)"
            )
        return value.strip()

    def model_for(self, model_type: str) -> tuple[str, str]:
        """The model name for `model_type` and the setting it comes from."""
        names, legacy = _NAME_SETTINGS[model_type]
        for name in names:
            value = getattr(self.models, name)
            if value is not None:
                return value, f"models.{name}"
        return getattr(self, legacy), legacy


_NAME_SETTINGS: dict[str, tuple[tuple[str, ...], str]] = {
    "text_small": (("text_small",), "small_model"),
    "text_large": (("text_large",), "large_model"),
    "text_embedding": (("text_embedding",), "embedding_model"),
    "object_small": (("object_small", "text_small"), "small_model"),
    "object_large": (("object_large", "text_large"), "large_model"),
}
"""Model type -> the ``models.*`` settings naming its model, in order, then the older one."""
MODEL_TYPES = tuple(_NAME_SETTINGS)
