"""Sync component callables, declared blocking (run in a worker thread), type-check; so do a
plugin's handles on the bus, the model registry and the cache where the protocols are wanted."""

from __future__ import annotations

from contracts.agent import Action, ActionContext, ActionResult, Provider, ProviderResult, State
from contracts.cache import ProviderCacheProtocol
from contracts.events import AGENT_STARTED, AgentPayload, EventBusProtocol, EventHandler
from contracts.memory import Memory
from contracts.models import ModelRuntime
from host.cache import ProviderCache
from host.events import EventBus
from host.handles import PluginBus, PluginCache, PluginModels
from host.models import ModelRegistry


def quote(message: Memory, state: State) -> ProviderResult:
    return ProviderResult(text="ACME is at 42")


def order(ctx: ActionContext) -> ActionResult:
    return ActionResult(text="ordered")


def started(payload: AgentPayload) -> None:
    print(payload.name)


PROVIDER = Provider("stocks.quote", quote, blocking=True)
ACTION = Action("ORDER", "place an order", order, blocking=True)
HANDLER = EventHandler(AGENT_STARTED, started, blocking=True)

bus: EventBusProtocol = PluginBus(EventBus(), "stocks")
models: ModelRuntime = PluginModels(ModelRegistry(), "stocks")
cache: ProviderCacheProtocol = PluginCache(ProviderCache(), "stocks")
bus.on(AGENT_STARTED, started, blocking=True).cancel()
