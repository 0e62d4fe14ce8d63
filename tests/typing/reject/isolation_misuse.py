"""Blocking declarations and handles misused."""

from __future__ import annotations

from contracts.agent import Provider, ProviderResult, State
from contracts.memory import Memory
from host.events import EventBus
from host.handles import PluginBus


def quote(message: Memory) -> ProviderResult:
    return ProviderResult()


def wrong_result(message: Memory, state: State) -> str:
    return ""


Provider("bad", quote, blocking=True)  # E: Argument 2 to "Provider" has incompatible type
Provider("bad", wrong_result, blocking=True)  # E: Argument 2 to "Provider" has incompatible type
Provider("bad", lambda m, s: ProviderResult(), blocking="yes")  # E: Argument "blocking"
PluginBus(EventBus(), 42)  # E: Argument 2 to "PluginBus" has incompatible type
