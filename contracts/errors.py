"""The root of every error the host raises on purpose; each area subclasses it in its own module."""

from __future__ import annotations

__all__ = ["AgentHostError"]


class AgentHostError(Exception):
    """Base class of agenthost's errors: catch this to catch any of them."""
