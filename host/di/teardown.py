"""Tearing down: closing a scope (its child scopes, then its resources in reverse order of
set-up) and releasing the resources of services dropped by a rebinding or an unload."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable
from typing import Any, cast

from dependency_injector import providers
from loguru import logger

from host.di.errors import ServiceReleaseError
from host.di.graph import Entry, recycle
from host.di.scopes import Node, Shared

__all__ = ["close", "drain", "retire"]

log = logger.bind(component="container")


async def close(node: Node) -> None:
    """Close `node`: close its open child scopes, then tear down its resources in reverse order
    of creation. Every resource is released even if some teardowns fail (then `ServiceReleaseError`
    lists them). Idempotent."""
    if node._closed:
        return
    errors: list[BaseException] = []
    for child in reversed(list(node._children)):
        try:
            await close(child)
        except ServiceReleaseError as exc:
            errors.extend(exc.errors)
    node._closed = True
    order = node._order
    if order:
        for entry in reversed(order):
            if entry.binding.is_resource and _initialized(entry.provider):
                try:
                    result = _resource(entry.provider).shutdown()
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:
                    log.opt(exception=exc).error(
                        "service {}: teardown failed", entry.binding.label()
                    )
                    errors.append(exc)
                    continue
            if entry.template is not None:
                recycle(node, entry, entry.template)
        node._order = []
        node._entries.clear()
    node._templates.clear()
    node._cache.clear()
    node._acache.clear()
    if node._parent is not None:
        node._parent._children.pop(node, None)
    else:
        await drain(node._shared)
    if errors:
        raise ServiceReleaseError(scope=node._kind, errors=errors)


def retire(shared: Shared, entries: Iterable[Entry]) -> None:
    """Tear down initialized resources of dropped entries (async ones in the background,
    awaited by `drain`)."""
    for entry in entries:
        provider = entry.provider
        if not entry.binding.is_resource or not _initialized(provider):
            continue
        label = entry.binding.label()
        if not entry.is_async:
            _shutdown_sync(provider, label)
            continue
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            shared.retired.append((provider, label))
            continue
        task = loop.create_task(_shutdown_logged(provider, label))
        shared.tasks.add(task)
        task.add_done_callback(shared.tasks.discard)


async def drain(shared: Shared) -> None:
    """Wait for the background teardowns `retire` started, and run the ones it deferred."""
    while shared.tasks:
        await asyncio.gather(*list(shared.tasks), return_exceptions=True)
    retired, shared.retired = shared.retired, []
    for provider, label in retired:
        await _shutdown_logged(provider, label)


def _resource(provider: providers.Provider[Any]) -> providers.Resource[Any]:
    return cast("providers.Resource[Any]", provider)


def _initialized(provider: providers.Provider[Any]) -> bool:
    return bool(getattr(provider, "initialized", False))


async def _shutdown_logged(provider: providers.Provider[Any], label: str) -> None:
    try:
        if _initialized(provider):
            result = _resource(provider).shutdown()
            if inspect.isawaitable(result):
                await result
    except Exception:
        log.exception("service {}: teardown failed", label)


def _shutdown_sync(provider: providers.Provider[Any], label: str) -> None:
    try:
        result = _resource(provider).shutdown()
        if inspect.iscoroutine(result):  # defensive: a sync resource never returns one
            result.close()
    except Exception:
        log.exception("service {}: teardown failed", label)
