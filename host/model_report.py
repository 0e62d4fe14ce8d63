"""``model:used``: the event every model call attempt emits (provider, duration, tokens, the
fallback path, the error, the caller's ids). Its payload is built without validating it again
where the registry vouches for the values (`used_payload`); `report` builds and emits it for
any attempt, `host.models.ModelRegistry.use_model` inlines the common case."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any, Final

from pydantic import BaseModel

from contracts.events import MODEL_USED, EventBusProtocol, ModelUsedPayload
from host.model_context import call_context
from host.model_failures import FailurePath
from host.model_providers import USED_DEFAULTS, ProviderEntry
from host.pydantic_slots import constructed

__all__ = [
    "ANSWERED",
    "ANSWERED_FOR_CALLER",
    "CALLER_FIELDS",
    "USED_DEFAULTS",
    "new_payload",
    "report",
    "used_payload",
]

clock = time.perf_counter
"""What a call's ``duration`` is measured with."""
_caller = call_context.get  # bound once (see host.models: no LOAD_METHOD on imported names)

CALLER_FIELDS: Final = ("agent_id", "room_id", "message_id")
FALLBACK_FIELDS: Final = ("fallback", "fallback_from", "fallback_reason")
ANSWERED: Final = {"model_type", "provider", "duration", "params", "output"}
"""The fields set by a first provider's answer: the fields set of every such payload, shared
(a frozen model's is never changed in place; ``model_copy`` copies it before an update, and
``model_construct(_fields_set=...)`` keeps the set it is given, as this does)."""
ANSWERED_FOR_CALLER: Final = ANSWERED | set(CALLER_FIELDS)
"""The same, for a call made for an agent's message."""
assert ModelUsedPayload.model_config.get("frozen")
new_payload = ModelUsedPayload.__new__


def used_payload(values: dict[str, Any], given: set[str]) -> ModelUsedPayload:
    """The ``model:used`` payload of `values` (every field; `given`: those that differ from
    their defaults), built by `report` from values of the registry's own of the
    fields' types: names, a duration, the call's typed params, a result of the model type's
    result type, the call context's ids. It is assembled as pydantic's ``model_construct``
    would, without validating it again (validating cost about 1.5 µs a call, a third of the
    registry's overhead in the host); `report` validates what it cannot vouch for (token
    counts). tests/models/test_registry_payloads.py checks it equals the validated payload."""
    return constructed(ModelUsedPayload, values, given)


def _usage(result: object) -> tuple[int | None, int | None]:
    usage = getattr(result, "usage", None)
    if usage is None:
        return None, None
    return getattr(usage, "input_tokens", None), getattr(usage, "output_tokens", None)


def report(
    events: EventBusProtocol,
    entry: ProviderEntry,
    started: float,
    path: FailurePath,
    params: BaseModel,
    *,
    result: object = None,
    error: BaseException | None = None,
    streamed: bool = False,
) -> Awaitable[None]:
    """Emit ``model:used`` for one attempt on `events`: the emit to await (no coroutine of its
    own around the bus's)."""
    values = USED_DEFAULTS.copy()
    values["model_type"] = entry.type_name
    values["provider"] = entry.provider
    values["duration"] = clock() - started
    values["params"] = params
    given = {"model_type", "provider", "duration", "params"}
    caller = _caller()
    if caller is not None:
        values["agent_id"] = caller.agent_id
        values["room_id"] = caller.room_id
        values["message_id"] = caller.message_id
        given.update(CALLER_FIELDS)
    trusted = _tokens(values, given, result)
    if path.failed:
        values["fallback"] = True
        values["fallback_from"] = path.failed
        values["fallback_reason"] = path.reason
        given.update(FALLBACK_FIELDS)
    if streamed:
        values["streamed"] = True
        given.add("streamed")
    if error is not None:
        values["error"] = f"{type(error).__name__}: {error}"
        given.add("error")
    if result is not None and (type(result) is entry.result or isinstance(result, BaseModel)):
        values["output"] = result
        given.add("output")
    if trusted:
        payload = used_payload(values, given)
    else:  # a provider's own usage object with odd token counts is checked (coerced)
        payload = ModelUsedPayload.model_validate({name: values[name] for name in given})
    return events.emit(MODEL_USED, payload)


def _tokens(values: dict[str, Any], given: set[str], result: object) -> bool:
    """Put `result`'s token counts into `values`; whether they are ints (trusted as they are)."""
    trusted = True
    if getattr(result, "usage", None) is not None:
        input_tokens, output_tokens = _usage(result)
        if input_tokens is not None:
            values["input_tokens"] = input_tokens
            given.add("input_tokens")
            trusted = type(input_tokens) is int
        if output_tokens is not None:
            values["output_tokens"] = output_tokens
            given.add("output_tokens")
            trusted = trusted and type(output_tokens) is int
    return trusted
