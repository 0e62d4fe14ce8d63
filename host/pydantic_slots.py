"""pydantic's own instance slots, set through their descriptors: how the hot paths build a model
from values they vouch for (rows read back, the ``model:used`` payload) as
``model_construct`` would, without its per-field work. A slot descriptor's ``__set__`` is
cheaper than ``object.__setattr__`` (and a model's own ``__setattr__`` refuses on frozen ones)."""

from __future__ import annotations

from pydantic import BaseModel

__all__ = ["set_dict", "set_extra", "set_fields_set", "set_private"]

set_dict = BaseModel.__dict__["__dict__"].__set__
set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
set_private = BaseModel.__dict__["__pydantic_private__"].__set__
