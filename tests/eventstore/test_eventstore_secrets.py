"""Every engine masks the registered secrets (`host.secrets`) in what it keeps for good, on both
write paths (``append_events``, ``append_encoded``), keys and escaped forms included, and the
stored data stays valid JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from contracts.eventstore import DomainEvent, EncodedEvent, EventStore
from host.secrets import MASK, register

KEY = "sk-eventstore-0123456789LEAK"
QUOTED = 'pass"word\\0123'  # escaped in JSON text: \" and \\


async def test_stored_events_never_hold_a_registered_secret(store: EventStore) -> None:
    register([KEY, QUOTED])
    await store.append_event(
        DomainEvent(
            aggregate_id="agent",
            event_type="model:used",
            data={"error": f"HTTP 401: Incorrect API key provided: {KEY}", KEY: [QUOTED]},
            metadata={"note": f"pw {QUOTED}"},
        )
    )
    text = json.dumps({"error": f"echo {KEY}", "n": "\n0123", "q": QUOTED})
    await store.append_encoded(
        [EncodedEvent("agent", "model:used", text, 1, datetime.now(UTC), metadata="{}")]
    )
    first, second = await store.get_events("agent")
    assert first.data == {"error": f"HTTP 401: Incorrect API key provided: {MASK}", MASK: [MASK]}
    assert first.metadata == {"note": f"pw {MASK}"}
    assert second.data == {"error": f"echo {MASK}", "n": "\n0123", "q": MASK}
    for event in (first, second):
        stored = json.dumps(event.data) + json.dumps(event.metadata)
        assert KEY not in stored and "pass" not in stored
