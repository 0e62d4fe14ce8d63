"""No silent fallback to another store: a store plugin that failed to load stops the start when it
was the one meant to serve.

The container chooses among the providers of a service by config pin, then priority, so when
the chosen store plugin fails (a typo in its settings) the next one takes over without a word:
with sqlite failing, the host ran on the in-memory store, said ready, accepted messages and lost
them all at exit (or, with postgres installed, failed later with a misleading "url is not set").
`check_stores` runs after the plugins loaded: for each store service, the plugin meant to serve
it (the one ``services.<token>`` pins, else the highest priority enabled plugin whose manifest
provides it) must have loaded; otherwise a `StoreUnavailableError` (a `ConfigError`: the CLI
exits with code 2) carries that plugin's own error, says what would have served instead, and
how to choose. An in-memory store thus serves only when configured: pinned, or the best store
left enabled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from contracts.eventstore import EVENT_STORE
from contracts.storage import DATABASE
from host.config import ConfigError
from host.di import BindingInfo
from host.discovery import Discovered
from host.loader import PluginStatus

__all__ = ["STORE_SERVICES", "StoreUnavailableError", "check_stores", "intended_provider"]

STORE_SERVICES: Final = (DATABASE.name, EVENT_STORE.name)
"""Services whose stand-in would keep data somewhere else: the memory store, the audit trail."""


class StoreUnavailableError(ConfigError):
    """The store plugin meant to serve a store service failed to load."""


def intended_provider(
    service: str,
    pins: Mapping[str, str],
    chosen: Sequence[str],
    discovered: Mapping[str, Discovered],
) -> tuple[str, str] | None:
    """(plugin meant to serve `service`, why) among the plugins `chosen` to load, or None."""
    pin = pins.get(service)
    if pin is not None:
        return pin, f"pinned by config services.{service}"
    best: tuple[int, str] | None = None
    for name in chosen:
        manifest = discovered[name].manifest if name in discovered else None
        if manifest is None or all(t.name != service for t in manifest.provides):
            continue
        if best is None or (manifest.priority, name) > best:
            best = (manifest.priority, name)
    if best is None:
        return None
    return best[1], f"the default: priority {best[0]}, the highest of the enabled providers"


def check_stores(
    pins: Mapping[str, str],
    statuses: Mapping[str, PluginStatus],
    discovered: Mapping[str, Discovered],
    bindings: Sequence[BindingInfo],
) -> None:
    """Raise `StoreUnavailableError` if a store service's intended plugin failed to load."""
    chosen = [name for name, status in statuses.items() if status.state != "disabled"]
    problems: list[str] = []
    for service in STORE_SERVICES:
        intended = intended_provider(service, pins, chosen, discovered)
        if intended is None:
            continue
        plugin, why = intended
        status = statuses.get(plugin)
        if status is None or status.state != "failed":
            continue
        serving = next((b.owner for b in bindings if b.token == service and b.chosen), None)
        others = sorted({b.owner or "host" for b in bindings if b.token == service})
        instead = (
            f"it would run on plugin {serving} instead"
            if serving is not None
            else "nothing else provides it"
        )
        choose = (
            f"choose another with services.{service} ({', '.join(others)})"
            if others
            else f"disable plugin {plugin} to run without '{service}'"
        )
        error = (status.error or "failed").replace("\n", "\n  ")
        problems.append(
            f"plugin {plugin}, the store for service '{service}' ({why}), failed to"
            f" {status.stage or 'load'}, and the host does not fall back to another store"
            f" ({instead}):\n  {error}\n  fix it, or {choose}"
        )
    if problems:
        raise StoreUnavailableError("\n".join(problems))
