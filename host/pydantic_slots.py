"""pydantic's own instance slots, set through their descriptors: how the hot paths build a model
from values they vouch for (rows read back, the ``model:used`` payload) as
``model_construct`` would, without its per-field work. A slot descriptor's ``__set__`` is
cheaper than ``object.__setattr__`` (and a model's own ``__setattr__`` refuses on frozen ones)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["constructed", "set_dict", "set_extra", "set_fields_set", "set_private"]

M = TypeVar("M", bound=BaseModel)

set_dict = BaseModel.__dict__["__dict__"].__set__
set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def constructed(
    model: type[M],
    values: dict[str, Any],
    given: set[str],
    *,
    extra: dict[str, Any] | None = None,
    private: dict[str, Any] | None = None,
) -> M:
    """An instance of `model` holding `values` (every field, in field order) with `given` as
    its fields set, and `extra` / `private` as its extra fields and private values (None for a
    model without them): ``model_construct``'s result without its per-field work, from values
    its caller vouches for (the model's own types)."""
    built = object.__new__(model)
    set_dict(built, values)
    set_fields_set(built, given)
    set_extra(built, extra)
    set_private(built, private)
    return built
