"""Which plugins load and in what order: config's choice (`select`), cycles, priority order.

Pure functions over discovered plugins and their dependency graph; `host.loader.Loader.plan`
uses them and records the failures they reveal.
"""

from __future__ import annotations

import difflib
import graphlib
import heapq
from collections.abc import Sequence

from loguru import logger

from contracts.config import HostConfig
from host.config import ConfigError, LoadedConfig, problems_message
from host.discovery import Discovered

__all__ = ["find_cycle", "priority_order", "select"]


def select(
    discovered: Sequence[Discovered], config: HostConfig, loaded: LoadedConfig | None = None
) -> tuple[list[str], list[str]]:
    """(names to load, names disabled by config). Unknown names in ``plugins.enabled`` or
    ``plugins.disabled`` are a `ConfigError` naming the list, where it was set (`loaded`'s
    sources) and what is installed. A settings section ``plugins.<name>`` for no installed
    plugin is logged as a warning (config may be shared by hosts with other plugins)."""
    known = {d.name for d in discovered}
    installed = ", ".join(sorted(known)) or "none"
    problems = []
    for key in ("enabled", "disabled"):
        unknown = sorted(set(getattr(config.plugins, key) or ()) - known)
        if unknown:
            source = loaded.source_of(f"plugins.{key}") if loaded is not None else "default"
            where = source.partition(":")[2] or ("config" if source == "default" else source)
            problems.append(
                f"  plugins.{key} (from {where}): unknown plugin"
                f"{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; installed: {installed}"
            )
    if problems:
        raise ConfigError(problems_message(problems))
    spellings = known | {name.replace("-", "_") for name in known}
    for section in sorted(set(config.plugins.model_extra or {}) - spellings):
        source = loaded.source_of(f"plugins.{section}") if loaded is not None else "config"
        guess = difflib.get_close_matches(section, sorted(spellings), n=1, cutoff=0.6)
        logger.bind(plugin="host").warning(
            "config plugins.{} (from {}): no installed plugin is called {}, its settings are"
            " unused{}; installed: {}",
            section,
            source.partition(":")[2] or source,
            section,
            f" (did you mean {guess[0]}?)" if guess else "",
            installed,
        )
    enabled = set(config.plugins.enabled) if config.plugins.enabled is not None else known
    chosen = sorted(n for n in known if n in enabled and n not in set(config.plugins.disabled))
    return chosen, sorted(known - set(chosen))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph` (``[a, b, a]``: a is after b, b after a), None if it has none."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


def priority_order(graph: dict[str, set[str]], candidates: dict[str, Discovered]) -> list[str]:
    """Topological order; among plugins ready at the same time, higher priority first, then
    by name (graphlib finds what is ready, a heap picks among it)."""
    sorter = graphlib.TopologicalSorter({n: graph.get(n, set()) for n in candidates})
    sorter.prepare()

    def key(name: str) -> tuple[int, str]:
        manifest = candidates[name].manifest
        return (-(manifest.priority if manifest else 0), name)

    ready: list[tuple[tuple[int, str], str]] = []
    order: list[str] = []
    while sorter.is_active():
        for name in sorter.get_ready():
            heapq.heappush(ready, (key(name), name))
        _, name = heapq.heappop(ready)
        order.append(name)
        sorter.done(name)
    return order
