"""The payloads and the `Reply` a turn assembles without validating (host/turn_payloads.py)
equal the validated models, fields set included, and serialize alike."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from pydantic import BaseModel

from contracts.agent import ActionResult, Reply
from contracts.events import MemoryPayload, MessagePayload
from contracts.memory import Content, Memory
from host.turn_payloads import memory_payload, message_payload, reply_of, sent_payload

AGENT, ROOM, USER = uuid4(), uuid4(), uuid4()


def same(built: BaseModel, validated: BaseModel) -> None:
    assert type(built) is type(validated)
    assert built == validated
    assert built.model_fields_set == validated.model_fields_set
    assert built.model_dump(mode="json") == validated.model_dump(mode="json")
    assert built.model_dump_json(exclude_unset=True) == validated.model_dump_json(
        exclude_unset=True
    )


def memory(text: str, entity: Any = USER, **extra: Any) -> Memory:
    return Memory(
        agent_id=AGENT, entity_id=entity, room_id=ROOM, content=Content(text=text, **extra)
    )


def test_message_received_and_sent() -> None:
    message = memory("hello")
    same(
        message_payload(AGENT, message),
        MessagePayload(agent_id=AGENT, room_id=ROOM, entity_id=USER, message=message),
    )
    reply = memory("hi", entity=AGENT, in_reply_to=str(message.id), actions=[])
    timings = {"memory": 0.001, "total": 0.002}
    sent = sent_payload(AGENT, reply, message.id, timings)
    same(
        sent,
        MessagePayload(
            agent_id=AGENT,
            room_id=ROOM,
            entity_id=AGENT,
            message=reply,
            in_reply_to=message.id,
            timings=timings,
        ),
    )
    timings["later"] = 1.0  # the payload's timings are its own
    assert "later" not in sent.timings


def test_memory_created() -> None:
    stored = memory("a fact", table_name="facts").model_copy(update={"table_name": "facts"})
    same(
        memory_payload(AGENT, stored),
        MemoryPayload(
            agent_id=AGENT,
            room_id=ROOM,
            entity_id=USER,
            memory_id=stored.id,
            table_name="facts",
            memory=stored,
        ),
    )


def test_reply() -> None:
    message = memory("hello")
    actions = [ActionResult(success=True, text="done", name="act")]
    fields: dict[str, Any] = {
        "responded": True,
        "text": "hi",
        "reply": memory("hi", entity=AGENT),
        "actions": actions,
        "evaluators": [],
        "timings": {"total": 0.5},
    }
    built = reply_of(AGENT, message, skipped={"slow": "timed out"}, **fields)
    validated = Reply(
        agent_id=AGENT,
        room_id=ROOM,
        message_id=message.id,
        skipped_providers={"slow": "timed out"},
        **fields,
    )
    same(built, validated)
    built.text = "changed"  # a reply is not frozen: its fields set is its own
    other = reply_of(AGENT, message, skipped={}, **fields)
    assert other.model_fields_set == validated.model_fields_set
    nothing = reply_of(
        AGENT,
        message,
        responded=False,
        text="",
        reply=None,
        actions=[],
        evaluators=[],
        skipped={},
        timings={},
    )
    assert nothing == Reply(agent_id=AGENT, room_id=ROOM, message_id=message.id, responded=False)
    assert nothing.model_fields_set == set(Reply.model_fields)  # as the turn always gave all
