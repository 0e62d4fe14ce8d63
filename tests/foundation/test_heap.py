"""A started host freezes what its start-up made out of the garbage collector's walks
(host/heap.py) and thaws it when it stops; in dev mode, where hot reload drops modules that
must be collected, or with ``gc_freeze: false`` (an app embedding the host), it freezes
nothing."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest

from host import heap
from host.app import Host
from host.config import load_config


async def test_a_started_host_freezes_start_up_and_thaws_it_on_stop(tmp_path: Path) -> None:
    other_hosts = heap._holders  # a host another test left running keeps its freeze
    host = Host(load_config(None, environ={"AGENTHOST_DATA_DIR": str(tmp_path)}))
    await host.start()
    try:
        assert gc.get_freeze_count() > 10_000  # the imports, plugins and config of a start-up
        assert all(o is not host for o in gc.get_objects())  # frozen: not walked
    finally:
        await host.stop()
    assert (gc.get_freeze_count() == 0) is (other_hosts == 0)


async def test_a_host_in_dev_mode_freezes_nothing(tmp_path: Path) -> None:
    env = {"AGENTHOST_DATA_DIR": str(tmp_path), "AGENTHOST_DEV": "true"}
    host = Host(load_config(None, environ=env))
    assert host.config.dev
    frozen = gc.get_freeze_count()
    await host.start()
    try:
        assert gc.get_freeze_count() == frozen
    finally:
        await host.stop()


@pytest.mark.parametrize("where", ["file", "env"])
async def test_gc_freeze_false_freezes_nothing(tmp_path: Path, where: str) -> None:
    """The setting, from the config file or AGENTHOST_GC_FREEZE: a cycle the app dropped while
    the host runs is collected at once."""
    env = {"AGENTHOST_DATA_DIR": str(tmp_path)}
    path = None
    if where == "file":
        path = tmp_path / "agenthost.yaml"
        path.write_text("gc_freeze: false\n", encoding="utf-8")
    else:
        env["AGENTHOST_GC_FREEZE"] = "false"
    host = Host(load_config(path, environ=env))
    assert host.config.gc_freeze is False

    class Node:
        pass

    cycle = Node()
    cycle.self = cycle  # type: ignore[attr-defined]
    alive = weakref.ref(cycle)
    frozen = gc.get_freeze_count()
    await host.start(agents=False)
    try:
        assert gc.get_freeze_count() == frozen
        del cycle
        gc.collect()
        assert alive() is None
    finally:
        await host.stop()


async def test_frozen_start_up_garbage_is_collected_after_the_stop(tmp_path: Path) -> None:
    """A reference cycle that start-up made and the running host dropped is not collected while
    frozen, and is once the host has stopped (nothing leaks past a host's life)."""

    class Node:
        pass

    cycle = Node()
    cycle.self = cycle  # type: ignore[attr-defined]
    alive = weakref.ref(cycle)
    host = Host(load_config(None, environ={"AGENTHOST_DATA_DIR": str(tmp_path)}))
    await host.start(agents=False)
    try:
        del cycle
        gc.collect()
        assert alive() is not None  # frozen with start-up: full collections skip it
    finally:
        await host.stop()
    gc.collect()
    assert (alive() is None) is (heap._holders == 0)


async def test_a_running_host_collects_the_young_generation_less_often(tmp_path: Path) -> None:
    """While a host runs the youngest generation's threshold is `YOUNG_THRESHOLD` (a message's
    objects freed by reference counting before a collection promotes them), the thresholds in
    place before come back at its stop, and an app's own larger threshold is kept."""
    before = gc.get_threshold()
    try:
        for app_threshold, running in ((700, heap.YOUNG_THRESHOLD), (200_000, 200_000)):
            gc.set_threshold(app_threshold, 10, 10)
            host = Host(load_config(None, environ={"AGENTHOST_DATA_DIR": str(tmp_path)}))
            await host.start(agents=False)
            try:
                assert gc.get_threshold() == (running, 10, 10) or heap._holders > 1
            finally:
                await host.stop()
            if heap._holders == 0:
                assert gc.get_threshold() == (app_threshold, 10, 10)
    finally:
        gc.set_threshold(*before)


async def test_a_threshold_the_app_sets_while_the_host_runs_is_kept_at_its_stop(
    tmp_path: Path,
) -> None:
    """The host's stop restores the young threshold it replaced only if it is still the one it
    set: an app that chose its own meanwhile keeps it (and its other two thresholds)."""
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        host = Host(load_config(None, environ={"AGENTHOST_DATA_DIR": str(tmp_path)}))
        await host.start(agents=False)
        try:
            gc.set_threshold(2_000, 20, 30)  # the app's own, chosen while the host runs
        finally:
            await host.stop()
        if heap._holders == 0:
            assert gc.get_threshold() == (2_000, 20, 30)
        host = Host(load_config(None, environ={"AGENTHOST_DATA_DIR": str(tmp_path)}))
        await host.start(agents=False)
        try:
            gc.set_threshold(heap.YOUNG_THRESHOLD, 5, 6)  # the host's young one, others changed
        finally:
            await host.stop()
        if heap._holders == 0:
            assert gc.get_threshold() == (2_000, 5, 6)
    finally:
        gc.set_threshold(*before)
