"""The ``@hookimpl`` marker: a plugin method subscribing to a builtin event the pluggy way.

A plugin subscribes to events by returning `EventHandler` objects from ``event_handlers()``, or
by marking methods named after the hooks (``on_message_received``, ``on_agent_started``... the
list is `host.hookspecs.HOOK_EVENTS`) with `hookimpl`. Each receives the event's payload as
``payload``, sync or async; what it returns is ignored::

    from contracts import AgentPayload, Plugin, hookimpl

    class Greeter(Plugin):
        @hookimpl
        async def on_agent_started(self, payload: AgentPayload) -> None:
            ...
"""

from __future__ import annotations

import pluggy

__all__ = ["HOOK_PROJECT", "hookimpl"]

HOOK_PROJECT = "agenthost"
"""pluggy's project name for agenthost's hooks (what `hookimpl` marks methods for)."""

hookimpl = pluggy.HookimplMarker(HOOK_PROJECT)
"""Marks a plugin method as the implementation of the hook of the same name."""
