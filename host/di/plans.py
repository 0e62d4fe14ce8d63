"""Reading what a constructor or factory needs from its signature (no container involved).

`plan_for` turns ``def __init__(self, db: DatabaseAdapter, log: Annotated[Logger, LOGGER],
cache: Cache | None = None)`` into a `Plan`: one `Param` per injectable parameter with the type to
match, the explicit token if any, and whether it may be left out. The container maps each `Param`
to a token and a dependency-injector provider.
"""

from __future__ import annotations

import inspect
import types
import typing
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final, get_args, get_origin

from contracts.tokens import Token
from host.di.errors import InjectionError, describe_type

__all__ = ["MISSING", "Param", "Plan", "plan_for"]

_EMPTY = inspect.Parameter.empty
MISSING: Final = object()
"""No value: the parameter is left to Python's default, or nothing provides it."""


@dataclass(frozen=True, slots=True)
class Param:
    """One injectable parameter."""

    name: str
    annotation: Any
    """The type to match against token types (``Annotated`` and ``| None`` stripped)."""
    token: Token[Any] | None
    """The token from ``Annotated[T, TOKEN]``, if given."""
    optional: bool
    """Annotated ``X | None``: gets None when nothing provides X (and there is no default)."""
    has_default: bool
    default: Any
    positional: bool
    """Positional-only: passed by position, not by keyword."""

    def describe(self) -> str:
        """What this parameter asks for, for error messages."""
        if self.token is not None:
            return f"token '{self.token.name}'"
        return describe_type(self.annotation)

    def fallback(self) -> Any:
        """What this parameter gets when nothing provides it: its default, None if optional,
        or `MISSING` (for a keyword parameter with a default, `MISSING` too: Python applies
        it)."""
        if self.has_default:
            return self.default if self.positional else MISSING
        if self.optional:
            return None
        return MISSING


@dataclass(frozen=True, slots=True)
class Plan:
    """The injectable parameters of one callable, in signature order."""

    target: str
    """How error messages name the callable: ``Weather.__init__`` or ``make_client``."""
    params: tuple[Param, ...]


_plans: weakref.WeakKeyDictionary[type[Any], Plan] = weakref.WeakKeyDictionary()


def plan_for(factory: Callable[..., Any]) -> Plan:
    """The injection plan of a class (its ``__init__``) or any other callable.

    Plans of classes are cached (weakly, so reloaded plugin classes are not kept alive).
    Raises an `InjectionError` (`host.di.errors`) for parameters that cannot be injected.
    """
    if isinstance(factory, type):
        cached = _plans.get(factory)
        if cached is not None:
            return cached
        plan = _build_plan(factory, f"{factory.__qualname__}.__init__")
        _plans[factory] = plan
        return plan
    name = getattr(factory, "__qualname__", None) or type(factory).__qualname__
    return _build_plan(factory, name)


def _build_plan(factory: Callable[..., Any], target: str) -> Plan:
    try:
        signature = inspect.signature(factory, eval_str=True)
    except (NameError, SyntaxError, TypeError, AttributeError) as exc:
        raise InjectionError(
            kind="unreadable", target=target, reason=str(exc), unresolved=True
        ) from exc
    except ValueError as exc:  # builtins without a signature
        raise InjectionError(kind="unreadable", target=target, reason=str(exc)) from exc
    params: list[Param] = []
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        has_default = parameter.default is not _EMPTY
        if parameter.annotation is _EMPTY:
            if has_default:
                continue  # nothing to inject into; the default applies
            raise InjectionError(kind="unannotated", target=target, parameter=parameter.name)
        annotation, token, optional = _parse(parameter.annotation, target, parameter.name)
        params.append(
            Param(
                name=parameter.name,
                annotation=annotation,
                token=token,
                optional=optional,
                has_default=has_default,
                default=parameter.default if has_default else None,
                positional=parameter.kind is parameter.POSITIONAL_ONLY,
            )
        )
    return Plan(target=target, params=tuple(params))


def _parse(annotation: Any, target: str, name: str) -> tuple[Any, Token[Any] | None, bool]:
    """Split an annotation into (type to match, explicit token, optional)."""
    token: Token[Any] | None = None
    optional = False
    for _ in range(3):  # Annotated[X | None, T] and Annotated[X, T] | None, in either nesting
        origin = get_origin(annotation)
        if origin is Annotated:
            base, *metadata = get_args(annotation)
            tokens = [item for item in metadata if isinstance(item, Token)]
            if len(tokens) > 1:
                raise InjectionError(
                    kind="several_tokens",
                    target=target,
                    parameter=name,
                    candidates=tuple(t.name for t in tokens),
                )
            if tokens:
                token = tokens[0]
            annotation = base
        elif origin is typing.Union or origin is types.UnionType:
            members = get_args(annotation)
            rest = tuple(member for member in members if member is not type(None))
            if len(rest) < len(members):
                optional = True
            if len(rest) != 1:
                # A union of several types: injectable only through an explicit token.
                return annotation, token, optional
            annotation = rest[0]
        else:
            break
    return annotation, token, optional
