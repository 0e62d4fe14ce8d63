"""The root of every error the host raises on purpose; each area subclasses it in its own module."""

from __future__ import annotations

__all__ = ["AgentHostError", "OwnershipError"]


class AgentHostError(Exception):
    """Base class of agenthost's errors: catch this to catch any of them."""


class OwnershipError(AgentHostError, PermissionError):
    """A plugin reached for what another plugin (or the host) owns through its handle on a host
    service: another plugin's event subscriptions, model handlers or cached providers."""
