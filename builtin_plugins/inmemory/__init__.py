"""In-memory memory store: dicts + numpy, faiss indexes; for tests and ephemeral agents."""

from __future__ import annotations

from .adapter import InMemoryAdapter
from .plugin import InMemoryPlugin, InMemorySettings

__all__ = ["InMemoryAdapter", "InMemoryPlugin", "InMemorySettings"]
