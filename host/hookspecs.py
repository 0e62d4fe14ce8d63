"""The hooks a plugin can implement with ``@hookimpl``, one per builtin event.

A plugin subscribes to events in one of two ways: return `EventHandler` objects from
``event_handlers()`` (typed, for any event including its own), or implement these hooks as
methods marked ``@hookimpl`` (the pluggy way, familiar from pytest and datasette). Each hook
receives the event's payload as ``payload``; it may be sync or async, and what it returns is
ignored. The host subscribes hook implementations on the event bus with the plugin's priority,
so both ways run in one order: by priority, then registration.

The marker plugins use is `contracts.hookimpl` (re-exported here as `hookimpl`). Example::

    from contracts import hookimpl

    class Greeter(Plugin):
        @hookimpl
        async def on_agent_started(self, payload: AgentPayload) -> None:
            ...
"""

from __future__ import annotations

import pluggy

from contracts.events import (
    ActionCompletedPayload,
    ActionStartedPayload,
    AgentPayload,
    HandlerFailedPayload,
    MemoryPayload,
    MessagePayload,
    ModelUsedPayload,
    PluginFailedPayload,
    PluginPayload,
    PluginReloadedPayload,
)
from contracts.hooks import HOOK_PROJECT, hookimpl

__all__ = ["HOOK_EVENTS", "PROJECT", "hookimpl", "hookspec"]

PROJECT = HOOK_PROJECT
hookspec = pluggy.HookspecMarker(PROJECT)


@hookspec
def on_message_received(payload: MessagePayload) -> None:
    """A message reached an agent, before anything was done with it (not yet stored)."""


@hookspec
def on_message_sent(payload: MessagePayload) -> None:
    """An agent's reply went out, after actions and evaluators ran; ``payload.timings`` holds
    the seconds each pipeline stage took."""


@hookspec
def on_agent_started(payload: AgentPayload) -> None:
    """An agent runtime started: its scope is open and it accepts messages."""


@hookspec
def on_agent_stopped(payload: AgentPayload) -> None:
    """An agent runtime stopped after finishing the messages it had in progress."""


@hookspec
def on_action_started(payload: ActionStartedPayload) -> None:
    """An action's handler is about to run for a message."""


@hookspec
def on_action_completed(payload: ActionCompletedPayload) -> None:
    """An action finished: ``success``, ``duration`` and, on failure, ``error``."""


@hookspec
def on_memory_created(payload: MemoryPayload) -> None:
    """A memory was stored (a message, a reply, a fact). Invalidates provider caches."""


@hookspec
def on_memory_updated(payload: MemoryPayload) -> None:
    """A stored memory changed."""


@hookspec
def on_memory_deleted(payload: MemoryPayload) -> None:
    """A memory was deleted; ``payload.memory`` is None."""


@hookspec
def on_model_used(payload: ModelUsedPayload) -> None:
    """A model call finished, successfully or not: provider, duration, tokens, fallback."""


@hookspec
def on_plugin_loaded(payload: PluginPayload) -> None:
    """A plugin was set up and registered (at start-up or by a reload)."""


@hookspec
def on_plugin_unloaded(payload: PluginPayload) -> None:
    """A plugin was torn down and everything it registered removed."""


@hookspec
def on_plugin_failed(payload: PluginFailedPayload) -> None:
    """A plugin failed at some stage; the host isolated it and kept going."""


@hookspec
def on_plugin_reloaded(payload: PluginReloadedPayload) -> None:
    """A plugin's new code is serving after a hot reload."""


@hookspec
def on_handler_failed(payload: HandlerFailedPayload) -> None:
    """An event handler raised or timed out. Failures of this hook are logged, not re-emitted."""


HOOK_EVENTS: dict[str, str] = {
    "on_message_received": "message:received",
    "on_message_sent": "message:sent",
    "on_agent_started": "agent:started",
    "on_agent_stopped": "agent:stopped",
    "on_action_started": "action:started",
    "on_action_completed": "action:completed",
    "on_memory_created": "memory:created",
    "on_memory_updated": "memory:updated",
    "on_memory_deleted": "memory:deleted",
    "on_model_used": "model:used",
    "on_plugin_loaded": "plugin:loaded",
    "on_plugin_unloaded": "plugin:unloaded",
    "on_plugin_failed": "plugin:failed",
    "on_plugin_reloaded": "plugin:reloaded",
    "on_handler_failed": "handler:failed",
}
"""Hook name -> the event it delivers."""
