"""The fault test: kill -9 of workers at named pipeline points and at random, a worker paused
past its lease, NATS and PostgreSQL restarted, all under load; checked afterwards in SQL per
room: no message lost, none answered twice, order kept. Slow (~1-2 min): ``pytest -m slow``."""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import fault_run

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


async def test_under_load_and_faults_nothing_is_lost_doubled_or_reordered(tmp_path: Path) -> None:
    # long enough for every kind of fault to hit the load (a faster queue ended it before the
    # pause came round)
    report, chaos = await fault_run(tmp_path, rooms=12, per_room=25, every=2.0)
    assert (report.lost, report.duplicated, report.out_of_order) == (0, 0, 0)
    assert report.parked == 0
    assert chaos.done["kill"] >= 1 and chaos.done["pause"] >= 1
    assert chaos.done["nats"] >= 1 and chaos.done["postgres"] >= 1
    assert report.redeliveries >= 1  # the faults did hit messages in flight
