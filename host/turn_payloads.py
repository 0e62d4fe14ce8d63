"""What a message's turn builds from values of its own: the ``message:received``,
``message:sent`` and ``memory:created`` payloads, the reply's `Memory` and the `Reply`.

They are assembled as pydantic's ``model_construct`` would, without validating again what the
host already holds typed (ids as UUIDs, a `Memory`, the stage timings it measured): validating
cost ~1.5-3 us each, five times a message. tests/runtime/test_turn_payloads.py checks each
equals the validated model, fields set included.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

from contracts.agent import ActionResult, Reply
from contracts.events import MemoryPayload, MessagePayload
from contracts.memory import DEFAULT_TABLE, Content, Memory
from host.pydantic_slots import constructed

__all__ = ["memory_payload", "message_payload", "reply_memory", "reply_of", "sent_payload"]

for _model in (MessagePayload, MemoryPayload):
    # a frozen model's fields set is never changed in place: payloads share theirs
    assert _model.model_config.get("frozen") and not _model.__private_attributes__
assert not Reply.__private_attributes__ and Reply.model_config.get("extra") in (None, "ignore")
assert not Memory.__private_attributes__ and not Content.__private_attributes__
assert Content.model_config.get("extra") == "allow" and list(Content.model_fields) == ["text"]
_RECEIVED: Final = {"agent_id", "room_id", "entity_id", "message"}
_SENT: Final = _RECEIVED | {"in_reply_to", "timings"}
_MEMORY: Final = set(MemoryPayload.model_fields)
_REPLY: Final = frozenset(Reply.model_fields)
_REPLY_CONTENT: Final = frozenset({"text", "in_reply_to", "actions"})
_REPLY_MEMORY: Final = frozenset(
    {"id", "agent_id", "entity_id", "room_id", "content", "metadata", "created_at"}
)


def message_payload(agent_id: UUID, message: Memory) -> MessagePayload:
    """``message:received`` for `message` (its room and sender)."""
    values = {
        "agent_id": agent_id,
        "room_id": message.room_id,
        "entity_id": message.entity_id,
        "message": message,
        "in_reply_to": None,
        "timings": {},
    }
    return constructed(MessagePayload, values, _RECEIVED)


def sent_payload(
    agent_id: UUID, reply: Memory, in_reply_to: UUID, timings: dict[str, float]
) -> MessagePayload:
    """``message:sent`` for the agent's `reply` to message `in_reply_to` (`timings` copied)."""
    values = {
        "agent_id": agent_id,
        "room_id": reply.room_id,
        "entity_id": agent_id,
        "message": reply,
        "in_reply_to": in_reply_to,
        "timings": dict(timings),
    }
    return constructed(MessagePayload, values, _SENT)


def memory_payload(agent_id: UUID, memory: Memory) -> MemoryPayload:
    """``memory:created`` for `memory`, stored for agent `agent_id`."""
    values = {
        "agent_id": agent_id,
        "room_id": memory.room_id,
        "entity_id": memory.entity_id,
        "memory_id": memory.id,
        "table_name": memory.table_name,
        "memory": memory,
    }
    return constructed(MemoryPayload, values, _MEMORY)


def reply_memory(
    memory_id: UUID,
    agent_id: UUID,
    message: Memory,
    text: str,
    actions: list[str | None],
    metadata: dict[str, Any],
    created_at: datetime,
) -> Memory:
    """The agent's reply `text` to `message` as a memory (its `Content` names the message and
    the `actions` run): as ``Memory(...)`` validates it, unless the id or the time is not what
    validation would keep as it is (another type, or not UTC: then validated)."""
    if (
        type(memory_id) is not UUID
        or type(created_at) is not datetime
        or created_at.tzinfo is not UTC
    ):
        return Memory(
            id=memory_id,
            agent_id=agent_id,
            entity_id=agent_id,
            room_id=message.room_id,
            content=Content(text=text, in_reply_to=str(message.id), actions=actions),
            metadata=metadata,
            created_at=created_at,
        )
    extra = {"in_reply_to": str(message.id), "actions": actions}
    content = constructed(Content, {"text": text}, set(_REPLY_CONTENT), extra=extra)
    values = {
        "id": memory_id,
        "agent_id": agent_id,
        "entity_id": agent_id,
        "room_id": message.room_id,
        "table_name": DEFAULT_TABLE,
        "content": content,
        "embedding": None,
        "metadata": metadata,
        "created_at": created_at,
        "unique": False,
    }
    return constructed(Memory, values, set(_REPLY_MEMORY))


def reply_of(
    agent_id: UUID,
    message: Memory,
    *,
    responded: bool,
    text: str,
    reply: Memory | None,
    actions: list[ActionResult],
    evaluators: list[ActionResult],
    skipped: dict[str, str],
    timings: dict[str, float],
) -> Reply:
    """The `Reply` to `message` (the lists and dicts given become the reply's own)."""
    values = {
        "agent_id": agent_id,
        "room_id": message.room_id,
        "message_id": message.id,
        "responded": responded,
        "text": text,
        "reply": reply,
        "actions": actions,
        "evaluators": evaluators,
        "skipped_providers": skipped,
        "timings": timings,
    }
    built = constructed(Reply, values, set(_REPLY))  # not frozen: a set of its own
    return built
