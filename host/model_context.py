"""Who a model call is made for and with what: `CallContext` (set by the runtime per message),
the `FallbackMark` a fallback leaves on it, what the caller's agent changes in a call
(`for_caller`), and params from untyped code checked as the model type's (`coerce_params`).
Apart from `host.models` because the runtime reads and sets the context without the registry."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel, ValidationError

from contracts.models import InvalidModelParamsError, ModelParams, ModelType
from host.validation import field_problems

__all__ = ["CallContext", "FallbackMark", "call_context", "coerce_params", "for_caller"]

P = TypeVar("P", bound=ModelParams)


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


def for_caller(
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


def coerce_params(model_type: ModelType[P, Any], params: object) -> P:
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
