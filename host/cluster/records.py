"""What the cluster's queue hands out and takes: claims, queued messages, outcomes, its errors.

Plain records, apart from `RoomQueue`'s SQL (host/cluster/queue.py) so the worker, the dispatcher
and the API read them without the queue; `queued_row` decodes a taken message's columns
(`TAKEN_COLUMNS`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any
from uuid import UUID

from contracts.errors import AgentHostError
from contracts.memory import Memory

__all__ = [
    "TAKEN_COLUMNS",
    "Abandoned",
    "Backlogged",
    "Claim",
    "Committed",
    "Enqueued",
    "Fenced",
    "OutboxEntry",
    "Outcome",
    "QueuedMessage",
    "queued_row",
    "reply_json",
]


class Fenced(AgentHostError):
    """The room was claimed by another worker (this one's lease ran out): nothing committed."""


class Abandoned(AgentHostError):
    """The worker cannot tell whether its commit landed (the room's row stayed locked, e.g. by
    that commit still running on a half-open connection): it lets the room's lease end, and
    the worker that takes it over finds what was committed."""


class Backlogged(AgentHostError):
    """The room's backlog is at its limit: the message was not taken (HTTP 429)."""

    def __init__(self, pending: int, limit: int, retry_after: int) -> None:
        super().__init__(
            f"the room has {pending} messages waiting (limit {limit}); retry in {retry_after} s"
        )
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Enqueued:
    id: UUID
    duplicate: bool
    """The message (id or idempotency key) was already taken: this is the first one's id."""
    fingerprint: str | None = None
    """A duplicate's: the fingerprint stored with the first one (None if it had no key)."""


@dataclass(frozen=True, slots=True)
class Claim:
    agent_id: UUID
    room_id: UUID
    fence: int
    takeover: bool
    """The room was held by another worker whose lease ran out."""
    first: QueuedMessage | None = field(default=None, compare=False)
    """The room's oldest waiting message, taken (its try counted) in the claim's transaction."""


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    id: UUID
    room_seq: int
    message: Memory
    stream: bool
    origin: str | None
    tries: int
    """This try included."""
    error: str | None
    """The previous try's error."""
    idem_key: str | None = None
    """The client's ``Idempotency-Key``, if it sent one."""


@dataclass(frozen=True, slots=True)
class Committed:
    """What `RoomQueue.commit` did: the room's next message (its try counted) or None, whether
    the room was let go, the outbox rows written (seq, subject, data) to send now, and the
    room claimed next."""

    following: QueuedMessage | None
    released: bool
    outbox: list[tuple[int, str, bytes]]
    claimed: Claim | None = None
    """Another room claimed for the worker in the same transaction, once this one was let go
    (`RoomQueue.commit`'s ``claim_from``)."""
    landed: bool = False
    """Read back after the commit's connection was lost (`RoomQueue.landed`): its outbox rows
    are left to the relay loop, and a room it claimed is not known to be a takeover."""


OutboxEntry = tuple[str, bytes]
"""A cluster event to send: its NATS subject and data."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """A message's end: ``done`` with its reply (JSON), or ``parked`` with its error."""

    id: UUID
    status: str
    reply: str | None
    error: str | None


def reply_json(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


TAKEN_COLUMNS = "id, room_seq, message, stream, origin, tries, error, created_at, idem_key"
"""The columns of a message taken (`queued_row` reads them)."""


def queued_row(row: Any) -> QueuedMessage | None:
    if row is None or row[0] is None:
        return None
    return QueuedMessage(
        id=UUID(str(row[0])),
        room_seq=int(row[1]),
        # its time is the arrival's, taken by the database under the room's lock
        message=Memory.model_validate_json(row[2]).model_copy(
            update={"created_at": row[7].astimezone(UTC)}
        ),
        stream=bool(row[3]),
        origin=row[4],
        tries=int(row[5]),
        error=row[6],
        idem_key=row[8],
    )
