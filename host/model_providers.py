"""Provider choice for model calls: the registered handlers of each model type, the order a
call tries them in (pin, priority, registration; an agent's preferred provider; a provider
named by the call) and the circuit breaker that skips a provider failing again and again.
Kept apart from `host.models`, which makes the calls, so that the rules of choice read alone."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from loguru import logger

from contracts.events import ModelUsedPayload
from contracts.models import (
    ModelCallError,
    ModelError,
    ModelHandler,
    ModelSettings,
    ModelType,
    NoModelHandlerError,
)

__all__ = ["Circuit", "ProviderChoice", "ProviderEntry"]

_order = itertools.count()

_NOT_HEALTH = frozenset({"model_not_served"})
"""Failures that say nothing about the provider's health: they do not open its circuit."""


USED_DEFAULTS: Final = {
    name: info.get_default() for name, info in ModelUsedPayload.model_fields.items()
}
"""Every field of ``model:used`` (the required ones too, as placeholders `report` replaces)."""


@dataclass(slots=True)
class Circuit:
    """Consecutive failures of one provider for one model type, and until when it is skipped."""

    failures: int = 0
    open_until: float = 0.0


@dataclass(slots=True, eq=False)
class ProviderEntry:
    """One registered handler, with what a call needs looked up once at registration."""

    handler: ModelHandler[Any, Any]
    owner: str
    provider: str
    priority: int
    circuit: Circuit
    """Shared by every entry of the same provider and model type (it outlives a reload)."""
    order: int = field(default_factory=lambda: next(_order))
    call: Callable[[Any], Awaitable[Any]] = field(init=False)
    type_name: str = field(init=False)
    result: type[Any] = field(init=False)
    """The model type's result type."""
    answered: dict[str, Any] = field(init=False)
    """The ``model:used`` values of a call this provider answers first, less those of the
    call (``duration``, ``params``, ``output``, the caller's ids): a copy is where a payload
    starts (`host.models`)."""

    def __post_init__(self) -> None:
        self.call = self.handler.handler
        self.type_name = self.handler.model_type.name
        self.result = self.handler.model_type.result
        self.answered = {**USED_DEFAULTS, "model_type": self.type_name, "provider": self.provider}


class ProviderChoice:
    """Handlers by model type, the plans calls follow, and the providers' circuits."""

    __slots__ = (
        "_circuits",
        "_named",
        "_preferred",
        "clock",
        "entries",
        "open_circuits",
        "plans",
        "ready",
        "settings",
    )

    def __init__(self, settings: ModelSettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clock = clock
        self.entries: dict[str, list[ProviderEntry]] = {}
        self.plans: dict[str, tuple[ProviderEntry, ...]] = {}
        """Model type name -> its entries in call order (rebuilt when registrations change)."""
        self.ready: dict[str, tuple[ProviderEntry, ...]] = {}
        """Model type name -> its plan, while no circuit is open: what a call asking for no
        provider takes without checking circuits (emptied when one opens, refilled by
        `candidates`)."""
        self._named: dict[tuple[str, str], tuple[ProviderEntry, ...]] = {}
        """(model type name, provider) -> that provider's entries, for calls naming it."""
        self._preferred: dict[tuple[str, str], tuple[ProviderEntry, ...]] = {}
        """(model type name, provider) -> the plan with that provider first (an agent's
        ``modelProvider``)."""
        self._circuits: dict[tuple[str, str], Circuit] = {}
        self.open_circuits = 0
        """How many circuits are open (0: calls skip the check of each provider's)."""

    # registration ------------------------------------------------------------------------------

    def register(self, handler: ModelHandler[Any, Any], owner: str, priority: int | None) -> None:
        """Add `handler` for its model type, tagged with the plugin `owner`."""
        if not isinstance(handler, ModelHandler):
            raise ModelError(f"plugin {owner}: models() returned {handler!r}, not a ModelHandler")
        provider = handler.provider or owner
        type_name = handler.model_type.name
        entry = ProviderEntry(
            handler,
            owner,
            provider,
            handler.priority if priority is None else priority,
            self._circuits.setdefault((provider, type_name), Circuit()),
        )
        self.entries.setdefault(type_name, []).append(entry)
        self._changed()

    def unregister_owner(self, owner: str) -> int:
        """Remove every handler `owner` registered (unload, reload); how many."""
        removed = 0
        for name, entries in self.entries.items():
            kept = [e for e in entries if e.owner != owner]
            removed += len(entries) - len(kept)
            self.entries[name] = kept
        self._changed()
        return removed

    def _changed(self) -> None:
        # cleared in place: `ModelRegistry.use_model` holds `ready` itself
        self.plans.clear()
        self.ready.clear()
        self._named.clear()
        self._preferred.clear()

    def providers(self, type_name: str) -> list[str]:
        """Providers of a model type in the order calls try them."""
        return [e.provider for e in self.plan(type_name)]

    def registered(self) -> dict[str, list[str]]:
        """Model type name -> its providers in call order (for errors and ``plugins list``)."""
        return {name: self.providers(name) for name, entries in self.entries.items() if entries}

    # plans -------------------------------------------------------------------------------------

    def plan(self, type_name: str) -> tuple[ProviderEntry, ...]:
        """The entries of `type_name` in call order: the pinned provider, then by priority."""
        plan = self.plans.get(type_name)
        if plan is None:
            entries = sorted(self.entries.get(type_name, ()), key=lambda e: (-e.priority, e.order))
            pinned = self.settings.pins.get(type_name)
            if pinned is not None and any(e.provider == pinned for e in entries):
                entries.sort(key=lambda e: e.provider != pinned)  # stable: the pin goes first
            elif pinned is not None and entries:
                # a typo, or the pinned plugin failed or is not configured: said, not silent
                logger.bind(plugin="host").warning(
                    "models.pins.{} is {!r}, which has no {} handler: {} answers instead"
                    " (registered: {})",
                    type_name,
                    pinned,
                    type_name,
                    entries[0].provider,
                    ", ".join(e.provider for e in entries),
                )
            plan = self.plans[type_name] = tuple(entries)
        return plan

    def candidates(
        self, model_type: ModelType[Any, Any], provider: str | None, prefer: str | None = None
    ) -> tuple[Sequence[ProviderEntry], tuple[ProviderEntry, ...]]:
        """The entries to try in order, and the ones skipped because their circuit is open."""
        if provider is not None:
            chosen = self._named.get((model_type.name, provider))
            if chosen is None:
                chosen = tuple(e for e in self.plan(model_type.name) if e.provider == provider)
                if not chosen:
                    raise NoModelHandlerError(
                        f"provider {provider!r} has no handler for {model_type.name}; "
                        f"{self.describe(model_type)}"
                    )
                self._named[(model_type.name, provider)] = chosen
            return chosen, ()
        plan = self.plan(model_type.name) if prefer is None else self._prefer(model_type, prefer)
        if not plan:
            raise NoModelHandlerError(
                f"no model handler for {model_type.name}; {self.describe(model_type)}"
            )
        if not self.open_circuits:
            if prefer is None:
                self.ready[model_type.name] = plan
            return plan, ()
        now = self.clock()
        ready = [e for e in plan if e.circuit.open_until <= now]
        if not ready:
            # every circuit open: try them anyway rather than fail without asking anyone
            return plan, ()
        return ready, tuple(e for e in plan[: plan.index(ready[0])])

    def _prefer(self, model_type: ModelType[Any, Any], provider: str) -> tuple[ProviderEntry, ...]:
        """The plan of `model_type` with `provider` first (an agent's ``modelProvider``)."""
        key = (model_type.name, provider)
        plan = self._preferred.get(key)
        if plan is None:
            entries = list(self.plan(model_type.name))
            if entries and not any(e.provider == provider for e in entries):
                logger.bind(plugin="host").warning(
                    "an agent's modelProvider is {!r}, which has no {} handler: {} answers"
                    " instead (registered: {})",
                    provider,
                    model_type.name,
                    entries[0].provider,
                    ", ".join(e.provider for e in entries),
                )
            entries.sort(key=lambda e: e.provider != provider)
            plan = self._preferred[key] = tuple(entries)
        return plan

    def describe(self, model_type: ModelType[Any, Any]) -> str:
        """What is registered, for an error saying there is no handler to call."""
        own = self.providers(model_type.name)
        if own:
            return f"registered for {model_type.name}: {', '.join(own)}"
        known = self.registered()
        listing = "; ".join(f"{name}: {', '.join(p)}" for name, p in sorted(known.items()))
        return f"registered: {listing or 'nothing (is a model plugin installed and enabled?)'}"

    # circuit breaker ---------------------------------------------------------------------------

    def succeeded(self, entry: ProviderEntry) -> None:
        """`entry` answered after failures: its circuit closes."""
        circuit = entry.circuit
        if circuit.open_until:
            self.open_circuits -= 1
        circuit.failures = 0
        circuit.open_until = 0.0

    def failed(self, entry: ProviderEntry, exc: BaseException) -> None:
        """`entry` failed retryably: counted, and its circuit opens after too many in a row."""
        if isinstance(exc, ModelCallError) and exc.reason in _NOT_HEALTH:
            return
        circuit = entry.circuit
        circuit.failures += 1
        if circuit.failures >= self.settings.breaker_failures:
            if not circuit.open_until:
                self.open_circuits += 1
                self.ready.clear()  # calls check the circuits from now on
            circuit.open_until = self.clock() + self.settings.breaker_cooldown
            logger.bind(plugin=entry.owner).warning(
                "model provider {} failed {} times in a row for {}; skipped for {}s",
                entry.provider,
                circuit.failures,
                entry.handler.model_type.name,
                self.settings.breaker_cooldown,
            )
