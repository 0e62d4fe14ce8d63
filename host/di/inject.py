"""Constructor injection: building a plugin (or any class) with its ``__init__`` parameters
taken from extras or resolved from a scope, and listing what a constructor needs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from contracts.services import ScopeError
from contracts.tokens import Token
from host.di.errors import MissingDependencyError, Rendered, Via
from host.di.graph import pinned_away, resolve_async
from host.di.plans import MISSING, Param, Plan, plan_for
from host.di.scopes import Node

__all__ = ["construct", "requirements"]

T = TypeVar("T")


def requirements(node: Node, cls: Callable[..., Any]) -> list[Token[Any]]:
    """The tokens `cls`'s constructor resolves from the container (optional ones included);
    parameters whose type matches no known token are left out."""
    tokens = node._shared.tokens
    found: list[Token[Any]] = []
    for param in plan_for(cls).params:
        token = param.token
        if token is None:
            names = tokens.names_for_type(param.annotation)
            if len(names) != 1:
                continue
            token = tokens.tokens[names[0]]
        if all(token.name != other.name for other in found):
            found.append(token)
    return found


async def construct(
    node: Node, cls: Callable[..., T], owner: str, extras: Mapping[Any, object]
) -> T:
    """`cls(...)` with each parameter from `extras` (by token or annotation type) or resolved
    from `node`, else its fallback (see `Param.fallback`); `owner` names the plugin."""
    node._check_open()
    plan = plan_for(cls)
    tokens = node._shared.tokens
    cache = node._cache
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for param in plan.params:
        value = _from_extras(param, extras) if extras else MISSING
        if value is MISSING:
            token = param.token or tokens.for_param(param, plan, owner)
            if token is not None and extras:
                value = extras.get(token, MISSING)
            if value is MISSING and token is not None:
                binding = node._find(token.name)
                handle = binding.handle_for(owner) if binding is not None else None
                if handle is not None:
                    value = handle()
            if value is MISSING:
                provider = cache.get(token) if token is not None else None
                if provider is not None:
                    value = provider()
                else:
                    value = await _resolve_param(node, token, param, plan, owner)
            if value is MISSING:
                continue  # keyword parameter with a default: let Python apply it
        if param.positional:
            args.append(value)
        else:
            kwargs[param.name] = value
    return cls(*args, **kwargs)


async def _resolve_param(
    node: Node, token: Token[Any] | None, param: Param, plan: Plan, owner: str
) -> Any:
    if token is not None and (node._find(token.name) is not None or pinned_away(node, token.name)):
        try:
            return await resolve_async(node, token)
        except ScopeError as exc:
            raise _via(exc, Via(owner, param.name, plan.target)) from exc
    value = param.fallback()
    if value is not MISSING or param.has_default:
        return value
    raise MissingDependencyError(
        parameter=param.name,
        target=plan.target,
        wants=param.describe(),
        token=token.name if token is not None else None,
        plugin=owner,
        installed=node._installed(),
    )


def _via(exc: ScopeError, via: Via) -> Exception:
    """`exc` naming the plugin parameter it surfaced in (one raised by a factory: in its text)."""
    if isinstance(exc, Rendered):
        return replace(exc, via=via)
    return type(exc)(f"plugin {via.plugin} (parameter `{via.parameter}` of {via.target}): {exc}")


def _from_extras(param: Param, extras: Mapping[Any, object]) -> Any:
    if param.token is not None:
        value = extras.get(param.token, MISSING)
        if value is not MISSING:
            return value
    try:
        return extras.get(param.annotation, MISSING)
    except TypeError:
        return MISSING
