"""Calling plugin components: a provider's ``get``, an action's or evaluator's ``validate`` and
``handler``; sync ones declared blocking in a worker thread.

The functions calling plugin code are sites for the loop monitor (`host.blocking`): a block is
reported with the component their locals name (``provider`` or ``item``, and ``components``
for its plugin). Owners are looked up then, not on each call.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from contracts.agent import (
    Action,
    ActionContext,
    ActionResult,
    Evaluator,
    Provider,
    ProviderResult,
    State,
)
from contracts.memory import Memory
from host.blocking import component, component_site
from host.components import ComponentRegistry
from host.logs import plugin_logger
from host.secrets import scrub

if TYPE_CHECKING:
    from loguru import Logger

__all__ = ["call", "guarded", "item_log", "owner_log", "provide", "validate"]


def owner_log(components: ComponentRegistry, kind: str, name: str, log: Logger) -> Logger:
    """The log of the plugin that registered component `name` (``action``, ``provider``,
    ``evaluator``), so a line about its failure carries its plugin's name; `log` if none."""
    owner = components.owner_of(kind, name)
    return plugin_logger(owner) if owner else log


def item_log(components: ComponentRegistry, item: Action | Evaluator, log: Logger) -> Logger:
    """`owner_log` of an action or evaluator."""
    return owner_log(components, _kind(item), item.name, log)


def _kind(item: Action | Evaluator) -> str:
    return "action" if isinstance(item, Action) else "evaluator"


async def call(function: Callable[..., Any], blocking: bool, *args: Any) -> Any:
    """A component's callable: in a worker thread when declared blocking; awaited when async."""
    if blocking:
        return await asyncio.to_thread(function, *args)
    result = function(*args)
    if inspect.isawaitable(result):
        return await result
    return result


def _owner(local: Mapping[str, Any], kind: str, name: str) -> str | None:
    components = local.get("components")
    owner = components.owner_of(kind, name) if components is not None else None
    return owner if isinstance(owner, str) else None


def _provider_site(local: Mapping[str, Any]) -> tuple[str, str | None] | None:
    provider = local.get("provider")
    if not isinstance(provider, Provider):
        return None
    return component("provider", provider.name, _owner(local, "provider", provider.name))


def _component_site(suffix: str) -> Callable[[Mapping[str, Any]], tuple[str, str | None] | None]:
    def describe(local: Mapping[str, Any]) -> tuple[str, str | None] | None:
        item = local.get("item")
        if not isinstance(item, Action | Evaluator):
            return None
        kind = _kind(item)
        return component(kind + suffix, item.name, _owner(local, kind, item.name))

    return describe


@component_site(_provider_site)
async def provide(
    provider: Provider, message: Memory, state: State, components: ComponentRegistry
) -> ProviderResult:
    """What `provider` adds for `message` (unchecked: the caller checks the type)."""
    result: ProviderResult = await call(provider.get, provider.blocking, message, state)
    return result


@component_site(_component_site(" validate"))
async def validate(
    item: Action | Evaluator, ctx: ActionContext, components: ComponentRegistry
) -> bool:
    """Whether `item` applies (its ``validate``; errors propagate)."""
    assert item.validate is not None
    return bool(await call(item.validate, item.blocking, ctx))


@component_site(_component_site(""))
async def guarded(
    item: Action | Evaluator,
    ctx: ActionContext,
    seconds: float,
    log: Logger,
    components: ComponentRegistry,
) -> ActionResult | None:
    """Run an action/evaluator handler; failures and timeouts become a failed `ActionResult`."""
    name = item.name
    started = time.perf_counter()
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            outcome = await call(item.handler, item.blocking, ctx)
    except Exception as exc:
        log = item_log(components, item, log)
        if isinstance(exc, TimeoutError) and deadline.expired():
            log.warning("{} timed out after {}s", name, seconds)
            outcome = ActionResult(success=False, error=f"timed out after {seconds}s")
        else:  # its own error, a TimeoutError of its own included
            log.opt(exception=exc).warning("{} failed: {}", name, exc)
            error = scrub(f"{type(exc).__name__}: {exc}")  # the reply carries it out
            outcome = ActionResult(success=False, error=error)
    if outcome is None:
        return None
    if not isinstance(outcome, ActionResult):
        outcome = ActionResult(
            success=False, error=f"returned {type(outcome).__name__}, not ActionResult"
        )
    return outcome.model_copy(update={"name": name, "duration": time.perf_counter() - started})
