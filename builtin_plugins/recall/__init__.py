"""The ``recall`` plugin: the memories most relevant to the incoming message, in the prompt."""

from __future__ import annotations

from .plugin import DEFAULT_THRESHOLDS, RecallPlugin, RecallSettings

__all__ = ["DEFAULT_THRESHOLDS", "RecallPlugin", "RecallSettings"]
