"""What the console reads from the event store: what an agent saw for a reply, a room's
timeline, and a replay of a room's conversation with the recorded model outputs."""

from __future__ import annotations

import contextlib
import inspect
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from contracts.events import (
    ACTION_COMPLETED,
    ACTION_STARTED,
    MEMORY_CREATED,
    MEMORY_DELETED,
    MEMORY_UPDATED,
    MESSAGE_RECEIVED,
    MESSAGE_SENT,
    MODEL_USED,
)
from contracts.eventstore import EVENT_STORE, DomainEvent, EventFilter, EventStore
from host.eventstore.replay import ReplayReport, host_runtime_factory, replay_conversation

if TYPE_CHECKING:
    from host.app import Host

__all__ = [
    "EVENT_TYPES",
    "ModelCall",
    "Saw",
    "TimelinePage",
    "event_store",
    "flush_trail",
    "replay_room",
    "room_timeline",
    "what_the_agent_saw",
]

EVENT_TYPES: tuple[str, ...] = tuple(
    event.name
    for event in (
        MESSAGE_RECEIVED,
        MESSAGE_SENT,
        MODEL_USED,
        ACTION_STARTED,
        ACTION_COMPLETED,
        MEMORY_CREATED,
        MEMORY_UPDATED,
        MEMORY_DELETED,
    )
)
"""The event types a room's timeline can be filtered by (those the audit trail files under a
room)."""

_SECTION = re.compile(r"\n\n(?=# )")


async def event_store(host: Host) -> EventStore | None:
    """The host's event store (bound by the audit plugin), None when none is."""
    if not host.container.has(EVENT_STORE):
        return None
    try:
        return await host.container.aresolve(EVENT_STORE)
    except Exception:
        return None


async def flush_trail(host: Host) -> None:
    """Let the plugins providing the event store write what they have queued (the audit trail
    appends in the background, a few ms behind), so a reply just given is in the store."""
    for loaded in list(host.loader.loaded.values()):
        if EVENT_STORE not in loaded.manifest.provides:
            continue
        flush = getattr(loaded.instance, "flush", None)
        if callable(flush):
            result = flush()
            if inspect.isawaitable(result):
                await result


@dataclass
class ModelCall:
    """One recorded model call."""

    model_type: str
    provider: str
    duration: float
    fallback: bool
    error: str | None
    system: str | None
    sections: list[tuple[str, str]]
    """The prompt split at its ``# heading`` sections: (heading, text); the providers' texts
    are the sections between the character's and the message's."""
    output: str | None


@dataclass
class Saw:
    """What the agent saw and did for one incoming message, from the recorded events."""

    message_id: UUID
    text: str | None = None
    reply: str | None = None
    calls: list[ModelCall] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    events: int = 0


def prompt_sections(prompt: str) -> list[tuple[str, str]]:
    """``# Heading\\nbody`` blocks of a prompt as (heading, body); text before the first
    heading is ("", text)."""
    out: list[tuple[str, str]] = []
    for block in _SECTION.split(prompt):
        if block.startswith("# "):
            heading, _, body = block.partition("\n")
            out.append((heading[2:].strip(), body))
        elif block.strip():
            out.append(("", block))
    return out


def _text(data: Any) -> str | None:
    if isinstance(data, dict):
        value = data.get("text")
        return value if isinstance(value, str) else None
    return None


async def what_the_agent_saw(store: EventStore, agent_id: UUID, message_id: UUID) -> Saw:
    """The recorded events of the message `message_id` (its correlation): the prompt and
    system text of each model call, the outputs, the actions and the stage timings."""
    events = await store.read_all(
        0, 1000, EventFilter(aggregate_id=str(agent_id), correlation_id=message_id)
    )
    saw = Saw(message_id=message_id, events=len(events))
    for event in events:
        data = event.data
        if event.event_type == "message:received":
            saw.text = _memory_text(data.get("message"))
        elif event.event_type == "message:sent":
            saw.reply = _memory_text(data.get("message"))
            timings = data.get("timings")
            if isinstance(timings, dict):
                saw.timings = {str(k): _seconds(v) for k, v in timings.items() if _number(v)}
        elif event.event_type == "action:completed":
            saw.actions.append(data)
        elif event.event_type == "model:used":
            saw.calls.append(_call(data))
    return saw


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _seconds(value: Any) -> float:
    return float(value) if _number(value) else 0.0


def _memory_text(memory: Any) -> str | None:
    return _text(memory.get("content")) if isinstance(memory, dict) else None


def _call(data: dict[str, Any]) -> ModelCall:
    params = data.get("params")
    params = params if isinstance(params, dict) else {}
    prompt = params.get("prompt")
    sections = prompt_sections(prompt) if isinstance(prompt, str) else []
    for message in params.get("messages") or ():
        if isinstance(message, dict):
            sections.append((str(message.get("role", "")), str(message.get("content", ""))))
    if not sections and isinstance(params.get("text"), str):  # an embedding's input
        sections.append(("input", params["text"]))
    duration = data.get("duration")
    system = params.get("system")
    return ModelCall(
        model_type=str(data.get("model_type", "")),
        provider=str(data.get("provider", "")),
        duration=_seconds(duration),
        fallback=bool(data.get("fallback")),
        error=str(data["error"]) if data.get("error") else None,
        system=system if isinstance(system, str) else None,
        sections=sections,
        output=_text(data.get("output")),
    )


@dataclass
class TimelinePage:
    events: list[DomainEvent]
    next_version: int | None
    """Pass as ``after`` for the next page; None on the last one."""


async def room_timeline(
    store: EventStore,
    agent_id: UUID,
    room_id: UUID,
    *,
    types: set[str] | None = None,
    after: int = 0,
    limit: int = 100,
) -> TimelinePage:
    """The room's recorded events in order (of `types` if given), `limit` from agent version
    `after` on."""
    room = str(room_id)
    found: list[DomainEvent] = []
    async for event in store.iter_events(str(agent_id), from_version=after, batch_size=500):
        if event.metadata.get("room_id") != room:
            continue
        if types and event.event_type not in types:
            continue
        if len(found) == limit:
            return TimelinePage(found, found[-1].version)
        found.append(event)
    return TimelinePage(found, None)


async def replay_room(host: Host, store: EventStore, agent_id: UUID, room_id: UUID) -> ReplayReport:
    """Re-run the room's recorded messages on a fresh runtime (this host's plugins, a private
    bus, an in-memory store) answering model calls from the recording; the report lists every
    divergence from the recorded replies."""
    factory = host_runtime_factory(host, store, str(agent_id))
    with contextlib.suppress(Exception):
        await flush_trail(host)
    return await replay_conversation(
        store, str(agent_id), factory, room_id=room_id, fallback=host.models
    )


def summarize(event: DomainEvent) -> str:
    """One line saying what a recorded event was about (its message text, model, action)."""
    data = event.data
    message = data.get("message")
    if isinstance(message, dict):
        return _memory_text(message) or ""
    if event.event_type == "model:used":
        text = f"{data.get('model_type')} via {data.get('provider')}"
        if data.get("fallback"):
            text += " (fallback)"
        return text + (f" failed: {data['error']}" if data.get("error") else "")
    if event.event_type.startswith("action:"):
        outcome = "" if data.get("success") in (None, True) else f" failed: {data.get('error')}"
        return f"{data.get('action')}{outcome}"
    memory = data.get("memory")
    if isinstance(memory, dict):
        return _memory_text(memory) or ""
    if "memory_id" in data:
        return f"memory {data['memory_id']}"
    return ""
