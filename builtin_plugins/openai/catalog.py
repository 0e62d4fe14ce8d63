"""The model names an OpenAI-compatible server serves (``GET /models``), and the closest ones.

Ollama, vLLM and llama.cpp answer ``/v1/models`` like OpenAI (``{"data": [{"id": ...}]}``);
Ollama's native listing (``{"models": [{"name": ...}]}``) is read too. Ollama serves
``llama3.2:latest`` under ``llama3.2`` as well, so a name without a tag matches its
``:latest``.
"""

from __future__ import annotations

from collections.abc import Iterable
from difflib import SequenceMatcher
from typing import Any

__all__ = ["ModelCatalog", "closest", "served_names"]


def served_names(data: Any) -> list[str] | None:
    """The model names in a ``/models`` answer, or None when it is not such a listing."""
    if not isinstance(data, dict):
        return None
    rows = data.get("data")
    key = "id"
    if not isinstance(rows, list):
        rows, key = data.get("models"), "name"
    if not isinstance(rows, list):
        return None
    names = [row.get(key) for row in rows if isinstance(row, dict)]
    return sorted({name for name in names if isinstance(name, str) and name})


def _similarity(wanted: str, name: str) -> float:
    wanted, name = wanted.lower(), name.lower()
    bare = name.split(":", 1)[0]
    prefix = 0.5 if bare and (wanted.startswith(bare) or bare.startswith(wanted)) else 0.0
    return prefix + max(
        SequenceMatcher(None, wanted, name).ratio(), SequenceMatcher(None, wanted, bare).ratio()
    )


def closest(wanted: str, names: Iterable[str]) -> list[str]:
    """Every name in `names`, the closest to `wanted` first (ties by name)."""
    return sorted(names, key=lambda name: (-_similarity(wanted, name), name))


class ModelCatalog:
    """What a server serves; `known` is False until a listing was read (nothing is refused
    before: a server without ``/models`` still gets every call)."""

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()
        self.known = False

    def update(self, names: Iterable[str]) -> None:
        self.names = tuple(names)
        self.known = True

    def serves(self, name: str) -> bool:
        if not self.known:
            return True
        return name in self.names or (":" not in name and f"{name}:latest" in self.names)

    def offer(self, wanted: str, limit: int = 8) -> str:
        """The served names for an error message, the closest to `wanted` first."""
        if not self.names:
            return "no model at all (pull or load one first)"
        ranked = closest(wanted, self.names)
        shown = ", ".join(ranked[:limit])
        more = len(ranked) - limit
        return shown + (f" and {more} more" if more > 0 else "")
