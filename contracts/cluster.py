"""The ``cluster:`` config section: several host processes over PostgreSQL and NATS.

Off by default: a host is one process, as before. ``enabled: true`` makes this process a member of
a cluster: an ``api`` process takes messages over HTTP and queues them in PostgreSQL; a ``worker``
claims rooms and processes their messages one at a time, in arrival order; ``both`` does the two.
See docs/cluster.md.

A message may be processed more than once (its worker died or lost its lease): `current_try`
tells the code running in a worker's turn, event handlers included, which try of which message
it runs in, and `MESSAGE_COMMITTED` tells this worker's handlers which try was committed (the
only one whose writes and cluster events count).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from contracts.events import Event, EventPayload, event_named

__all__ = [
    "MESSAGE_COMMITTED",
    "ClusterRole",
    "ClusterSettings",
    "MessageTry",
    "current_try",
    "from_cluster",
    "mark_for_cluster",
    "marked_events",
    "trying",
]

P = TypeVar("P", bound=EventPayload)

ClusterRole = Literal["api", "worker", "both"]


class ClusterSettings(BaseModel):
    """Config section ``cluster``."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    enabled: bool = False
    """Run as a member of a cluster (False: single process, the default)."""
    role: ClusterRole = "both"
    """``api`` takes messages over HTTP, ``worker`` processes them, ``both`` does the two."""
    postgres_url: SecretStr | None = None
    """The PostgreSQL holding the room queue (None: ``plugins.postgres.url``, the memory store:
    a reply and the room's progress commit in one transaction, so they must share a database)."""
    nats_url: str | None = "nats://127.0.0.1:4222"
    """NATS for wake-ups, replies and streamed chunks (None: PostgreSQL polling only)."""
    lease: float = Field(default=10.0, gt=0)
    """Seconds a worker holds a room without renewing it; another worker takes it over after."""
    backlog_limit: int = Field(default=1000, ge=1)
    """Messages waiting in one room beyond which new ones get 429 with Retry-After."""
    retry_after: int = Field(default=2, ge=1)
    """Seconds a 429 asks the client to wait."""
    max_tries: int = Field(default=3, ge=1)
    """Attempts at one message (failures and crashed or paused workers) before it is parked."""
    concurrency: int = Field(default=16, ge=1)
    """Rooms one worker processes at once (one message at a time in each)."""
    poll_interval: float = Field(default=1.0, gt=0)
    """Seconds between PostgreSQL polls for work and replies (NATS wake-ups come sooner)."""
    reply_timeout: float = Field(default=300.0, gt=0)
    """Seconds an HTTP request waits for its reply before 504 (the message stays queued)."""
    drain_timeout: float = Field(default=30.0, gt=0)
    """Seconds a stopping worker waits for its messages in progress before releasing rooms."""
    retention: float | None = Field(default=7 * 86400.0, gt=0)
    """Seconds a message answered (``done``) is kept after its end; the workers then purge it,
    and its ``Idempotency-Key`` is accepted as a new message. None: kept forever. Parked
    messages are kept. At least ``RETENTION_LEASES`` leases (a worker whose commit lost its
    answer reads the message back within about one lease); keep it well above
    ``reply_timeout`` (a client retrying a key after its message was purged runs it again)."""
    purge_interval: float = Field(default=60.0, gt=0)
    """Seconds between two purges of messages older than ``retention`` (by one worker at a
    time)."""
    purge_batch: int = Field(default=1000, ge=1)
    """Messages one purge deletes per transaction (it goes on, a batch at a time, until none
    is left or ``purge_batches`` were deleted)."""
    purge_batches: int = Field(default=10, ge=1)
    """Batches one purge deletes at most; the next purge (``purge_interval`` later) goes on.
    A backlog of answered messages (the first purge after an upgrade) is purged a few batches
    a time rather than in one long run."""
    events: list[str] = Field(default_factory=lambda: ["message:sent"])
    """Events that travel to the other processes (besides those marked in code with
    `mark_for_cluster`); a handler there receives them by subscribing to `from_cluster(event)`."""
    node_id: str | None = Field(default=None, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")
    """This process's name in the cluster (None: host name, pid and a random suffix)."""

    @model_validator(mode="after")
    def _retention_above_the_lease(self) -> ClusterSettings:
        if self.retention is not None and self.retention < RETENTION_LEASES * self.lease:
            raise ValueError(
                f"cluster.retention ({self.retention:g} s) must be at least {RETENTION_LEASES}"
                f" times cluster.lease ({self.lease:g} s): a worker whose commit lost its answer"
                " reads the message back within about a lease, and a message purged before"
                " reads as not committed (keep it well above cluster.reply_timeout too)"
            )
        return self


RETENTION_LEASES = 2
"""`ClusterSettings.retention` is at least this many leases."""

_marked: set[str] = set()
_lock = threading.Lock()


def mark_for_cluster(event: Event[Any]) -> Event[Any]:
    """Mark `event` to travel: in cluster mode, each time a process emits it, every other process
    emits `from_cluster(event)` with the same payload. Returns `event` (usable at declaration)."""
    with _lock:
        _marked.add(event.name)
    return event


def marked_events() -> frozenset[str]:
    with _lock:
        return frozenset(_marked)


def from_cluster(event: Event[P]) -> Event[P]:
    """The event emitted in this process when another process of the cluster emitted `event`
    (one marked for the cluster): subscribe to it to opt in, e.g.
    ``bus.on(from_cluster(MESSAGE_SENT), handler)``. Never emitted in single-process mode; the
    process that emitted `event` gets `event` only, so a handler of both sees each once."""
    name = f"cluster:{event.name}"
    known = event_named(name)
    if known is not None:
        return known
    return Event(name, event.payload, f"{event.name} emitted by another process of the cluster")


class MessageTry(EventPayload):
    """One try of a message by a cluster worker: what `current_try` returns inside its turn
    and the payload of `MESSAGE_COMMITTED`."""

    agent_id: UUID
    room_id: UUID
    message_id: UUID
    """The same on every try (derived from the ``Idempotency-Key`` when the client sent one):
    the key to give an outside system so that a try run again does not act twice."""
    number: int
    """1 for the first try; each try counts, whether it failed, crashed or lost its lease."""
    idempotency_key: str | None
    """The client's ``Idempotency-Key`` header, if it sent one."""
    worker: str
    """The node id of the worker running this try."""


MESSAGE_COMMITTED = Event(
    "message:committed",
    MessageTry,
    "cluster mode: a worker committed this try of a message (its writes, reply and cluster events)",
)
"""Emitted in the worker's process only (add it to ``cluster.events`` to send it to the others),
after the commit, once per message: the handlers of the turn's events saw every try, this says
which one counted. Never emitted in single-process mode."""

_try: ContextVar[MessageTry | None] = ContextVar("agenthost_cluster_try", default=None)


def current_try() -> MessageTry | None:
    """The try of the message this code runs in, inside a cluster worker's turn (its event
    handlers and the tasks it starts included); None elsewhere and in single-process mode."""
    return _try.get()


@contextmanager
def trying(attempt: MessageTry) -> Iterator[MessageTry]:
    """Make `attempt` current for the code run inside (the cluster worker's; not for plugins)."""
    token = _try.set(attempt)
    try:
        yield attempt
    finally:
        _try.reset(token)
