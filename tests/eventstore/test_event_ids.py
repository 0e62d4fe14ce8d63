"""The ids the stores draw for events appended without one (`new_ids`): UUID version 7."""

from __future__ import annotations

import time
from uuid import RFC_4122, UUID

import pytest

from host.eventstore.common import new_ids


@pytest.mark.parametrize("count", [0, 1, 2, 77, 4096, 4097, 10_000])
def test_new_ids_are_time_ordered_uuid7s(count: int) -> None:
    before = time.time_ns() // 1_000_000
    ids = new_ids(count)
    after = time.time_ns() // 1_000_000
    assert len(ids) == count
    assert len(set(ids)) == count
    assert ids == sorted(ids)  # increasing: appended at the end of the id index
    for raw in ids:
        assert type(raw) is bytes and len(raw) == 16
        uuid = UUID(bytes=raw)
        assert uuid.version == 7
        assert uuid.variant == RFC_4122
        millis = int.from_bytes(raw[:6], "big")
        # the counter carries into the milliseconds only past 4096 ids a batch
        assert before <= millis <= after + count // 4096


def test_new_ids_differ_between_calls() -> None:
    first, second = new_ids(64), new_ids(64)
    assert not set(first) & set(second)
    # the random part differs too, not only the time
    assert {raw[8:] for raw in first}.isdisjoint({raw[8:] for raw in second})
