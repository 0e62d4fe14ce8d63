"""Turning pydantic validation errors into the one-line messages the host reports."""

from __future__ import annotations

from pydantic import ValidationError

__all__ = ["field_problems"]


def field_problems(exc: ValidationError) -> str:
    """``field a.b: reason; field c: reason`` (never the input values: they may be secrets)."""
    return "; ".join(
        f"field {'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
        for err in exc.errors()
    )
