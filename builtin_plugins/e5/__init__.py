"""The ``e5`` plugin: TEXT_EMBEDDING by multilingual-e5-small offline (``embeddings`` extra)."""

from __future__ import annotations

from .plugin import MODEL_NAME, E5Plugin, E5Settings

__all__ = ["MODEL_NAME", "E5Plugin", "E5Settings"]
