"""Event payloads checked at emit: a payload of another type than its event's is converted when
it may be (a dict, the same class re-created by a hot reload) and refused otherwise with an
error naming the event and the field (`coerce_payload`)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from contracts.events import Event, EventPayload, PayloadTypeError, same_payload_type
from host.validation import field_problems

__all__ = ["coerce_payload"]

P = TypeVar("P", bound=EventPayload)


def coerce_payload(event: Event[P], payload: object) -> P:
    """The payload as `event`'s type, or a `PayloadTypeError` naming the event and the field.

    Accepted: an instance of the type or a subclass, the same class re-created by a hot reload,
    and a dict (untyped code, or a payload read back from the event store)."""
    expected = event.payload
    if isinstance(payload, expected):
        return payload
    wrong_type = f"event {event.name!r} takes a payload of type {expected.__name__}, got "
    if isinstance(payload, BaseModel):
        if not same_payload_type(type(payload), expected):
            # Another model, even with matching fields, is a mistake mypy would reject too;
            # only the same class re-created by a hot reload of its module is converted.
            problems = _problems(expected, payload.model_dump())
            detail = f" ({problems})" if problems else ""
            raise PayloadTypeError(f"{wrong_type}{type(payload).__name__}{detail}")
        data: object = payload.model_dump()
    elif isinstance(payload, dict):
        data = payload
    else:
        raise PayloadTypeError(f"{wrong_type}{type(payload).__name__}")
    try:
        return expected.model_validate(data)
    except ValidationError as exc:
        raise PayloadTypeError(
            f"event {event.name!r}: invalid {expected.__name__} payload ({field_problems(exc)})"
        ) from exc


def _problems(expected: type[BaseModel], data: dict[str, Any]) -> str:
    """What `data` lacks or has wrong as an `expected` payload ('' if it would validate)."""
    try:
        expected.model_validate(data)
    except ValidationError as exc:
        return field_problems(exc)
    return ""
