"""Models from any OpenAI-compatible HTTP endpoint."""

from __future__ import annotations

from .plugin import OpenAIPlugin, OpenAISettings

__all__ = ["OpenAIPlugin", "OpenAISettings"]
