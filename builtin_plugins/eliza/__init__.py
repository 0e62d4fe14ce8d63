"""The no-API-key default: classic ELIZA for text and a local hashing embedding."""

from __future__ import annotations

from .engine import Session
from .plugin import ElizaPlugin, ElizaSettings

__all__ = ["ElizaPlugin", "ElizaSettings", "Session"]
