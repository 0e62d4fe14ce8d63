"""The ``audit`` plugin: records the runtime's events into the event store, per agent."""

from __future__ import annotations

from .plugin import AuditPlugin
from .recorder import AuditRecorder
from .settings import DEFAULT_EVENTS, AuditSettings
from .store import open_event_store

__all__ = ["DEFAULT_EVENTS", "AuditPlugin", "AuditRecorder", "AuditSettings", "open_event_store"]
