"""The ``knowledge`` plugin: documents chunked, embedded, searched; the relevant ones in prompts."""

from __future__ import annotations

from .base import KnowledgeStore
from .chunking import chunk_text
from .plugin import KnowledgePlugin, KnowledgeSettings
from .readers import UnreadableError, read_document

__all__ = [
    "KnowledgePlugin",
    "KnowledgeSettings",
    "KnowledgeStore",
    "UnreadableError",
    "chunk_text",
    "read_document",
]
