"""Hypothesis: any sequence of appends (checked, unchecked, stale, ahead) leaves the store equal
to a plain-Python model of an append-only log, on every engine."""

from __future__ import annotations

from typing import Literal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.eventstore import ConcurrencyError, DomainEvent, EventFilter

from .conftest import StoreFactory

Expect = Literal["none", "current", "stale", "ahead"]
op = st.tuples(
    st.sampled_from(["a", "b", "c"]),
    st.integers(min_value=0, max_value=4),
    st.sampled_from(["none", "current", "stale", "ahead"]),
    st.sampled_from(["x:one", "x:two"]),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=st.lists(op, max_size=12))
async def test_appends_match_a_model_log(
    store_factory: StoreFactory, ops: list[tuple[str, int, Expect, str]]
) -> None:
    versions: dict[str, int] = {}
    log: list[tuple[str, int, str, int]] = []  # aggregate, version, type, serial
    serial = 0
    async with store_factory() as store:
        for aggregate, count, expect, kind in ops:
            current = versions.get(aggregate, 0)
            expected = {
                "none": None,
                "current": current,
                "stale": current - 1,
                "ahead": current + 1,
            }[expect]
            if expected is not None and expected < 0:
                expected = current + 2
            batch = []
            for _ in range(count):
                serial += 1
                batch.append(
                    DomainEvent(aggregate_id=aggregate, event_type=kind, data={"serial": serial})
                )
            conflict = expected is not None and expected != current
            try:
                stored = await store.append_events(aggregate, batch, expected)
            except ConcurrencyError as exc:
                assert conflict, f"unexpected conflict: {exc}"
                assert exc.actual == current
                continue
            assert not conflict, "a stale expected version was accepted"
            assert [e.version for e in stored] == list(range(current + 1, current + count + 1))
            for event in stored:
                log.append((aggregate, event.version, kind, int(event.data["serial"])))  # type: ignore[arg-type]
            versions[aggregate] = current + count

        everything = await store.read_all(limit=10_000)
        assert [
            (e.aggregate_id, e.version, e.event_type, e.data["serial"]) for e in everything
        ] == log
        positions = [e.position or 0 for e in everything]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)
        assert await store.last_position() == (positions[-1] if positions else 0)
        for aggregate in ("a", "b", "c"):
            assert await store.get_version(aggregate) == versions.get(aggregate, 0)
            own = [(a, v, t, s) for a, v, t, s in log if a == aggregate]
            got = await store.get_events(aggregate)
            assert [(e.aggregate_id, e.version, e.event_type, e.data["serial"]) for e in got] == own
        assert await store.aggregates() == sorted((a, v) for a, v in versions.items() if v > 0)
        ones = await store.read_all(filter=EventFilter(event_types=("x:one",)))
        assert [e.data["serial"] for e in ones] == [s for _, _, t, s in log if t == "x:one"]
