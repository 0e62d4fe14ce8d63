"""The ``minilm`` plugin: TEXT_EMBEDDING by all-MiniLM-L6-v2 (the ``embeddings-torch`` extra)."""

from __future__ import annotations

from .plugin import MODEL_NAME, MiniLMPlugin, MiniLMSettings

__all__ = ["MODEL_NAME", "MiniLMPlugin", "MiniLMSettings"]
