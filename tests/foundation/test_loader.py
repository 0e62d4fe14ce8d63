"""Loader: order by dependencies then priority, failures isolated with the chain named,
teardown in reverse, rollback of a failed setup, unknown names in config."""

from __future__ import annotations

from collections.abc import AsyncIterator

import importlib_metadata
import pytest

from contracts.config import HostConfig, PluginsSettings
from host.app import Host
from host.config import ConfigError, LoadedConfig
from host.discovery import Discovered, from_entry_points

from . import sample_plugins
from .sample_plugins import JOURNAL

GROUP = "agenthost.plugins"


def entry_points(*pairs: tuple[str, str]) -> list[Discovered]:
    eps = [
        importlib_metadata.EntryPoint(name, f"{sample_plugins.__name__}:{target}", GROUP)
        for name, target in pairs
    ]
    return from_entry_points(eps)


@pytest.fixture(autouse=True)
def clean_journal() -> None:
    JOURNAL.clear()


@pytest.fixture
async def host() -> AsyncIterator[Host]:
    instances: list[Host] = []

    def build(discovered: list[Discovered], **plugins: object) -> Host:
        config = HostConfig(plugins=PluginsSettings(**plugins))  # type: ignore[arg-type]
        instance = Host(LoadedConfig(config, None), discovered=discovered)
        instances.append(instance)
        return instance

    yield build  # type: ignore[misc]
    for instance in instances:
        await instance.stop()


async def test_dependencies_first_then_priority_and_teardown_in_reverse(host) -> None:  # type: ignore[no-untyped-def]
    app = host(entry_points(("alpha", "Alpha"), ("beta", "Beta"), ("gamma", "Gamma")))
    await app.start(agents=False)
    assert JOURNAL == ["setup:gamma", "setup:beta", "setup:alpha"]
    await app.stop()
    assert JOURNAL[3:] == ["teardown:alpha", "teardown:beta", "teardown:gamma"]


async def test_missing_dependency_fails_the_chain_and_the_rest_loads(host) -> None:  # type: ignore[no-untyped-def]
    app = host(
        entry_points(
            ("needs-ghost", "NeedsGhost"),
            ("needs-needs-ghost", "NeedsNeedsGhost"),
            ("beta", "Beta"),
        )
    )
    await app.start(agents=False)
    status = {s.name: s for s in app.statuses}
    assert status["beta"].state == "loaded"
    assert status["needs-ghost"].error == "depends on ghost, which is not installed"
    assert status["needs-needs-ghost"].error == "depends on needs-ghost, which failed"
    assert JOURNAL == ["setup:beta"]


async def test_cycles_fail_naming_the_chain(host) -> None:  # type: ignore[no-untyped-def]
    app = host(
        entry_points(
            ("cycle-x", "CycleX"), ("cycle-y", "CycleY"), ("after-cycle", "AfterCycle"),
            ("gamma", "Gamma"),
        )
    )  # fmt: skip
    await app.start(agents=False)
    status = {s.name: s for s in app.statuses}
    assert status["cycle-x"].state == "failed" and status["cycle-y"].state == "failed"
    assert "dependency cycle: cycle-" in (status["cycle-x"].error or "")
    assert status["after-cycle"].error == "depends on cycle-x, which failed"
    assert status["gamma"].state == "loaded"


async def test_failed_setup_is_rolled_back_and_reported(host) -> None:  # type: ignore[no-untyped-def]
    app = host(entry_points(("fails-setup", "FailsSetup"), ("gamma", "Gamma")))
    failures = []
    from contracts.events import PLUGIN_FAILED

    app.events.on(PLUGIN_FAILED, failures.append)
    await app.start(agents=False)
    status = {s.name: s for s in app.statuses}
    assert status["fails-setup"].state == "failed" and status["fails-setup"].stage == "setup"
    assert "cannot reach the weather service" in (status["fails-setup"].error or "")
    assert app.components.owner_of("provider", "fails-setup-provider") is None
    assert all(p.name != "fails-setup-provider" for p in app.components.providers)
    assert [f.name for f in failures] == ["fails-setup"] and failures[0].stage == "setup"
    assert failures[0].file and failures[0].file.endswith("sample_plugins.py")


async def test_a_failing_teardown_does_not_stop_the_others(host) -> None:  # type: ignore[no-untyped-def]
    app = host(
        entry_points(("fails-teardown", "FailsTeardown"), ("gamma", "Gamma"), ("beta", "Beta"))
    )
    await app.start(agents=False)
    await app.stop()
    assert [j for j in JOURNAL if j.startswith("teardown")] == [
        "teardown:beta",
        "teardown:fails-teardown",
        "teardown:gamma",
    ]


async def test_invalid_plugins_are_isolated_at_discovery() -> None:
    found = {
        d.name: d
        for d in entry_points(
            ("wrong-name", "WrongName"), ("not-a-plugin", "NotAPlugin"), ("missing", "Missing"),
            ("gamma", "Gamma"),
        )
    }  # fmt: skip
    assert found["gamma"].error is None
    assert "differs from its entry point name 'wrong-name'" in (found["wrong-name"].error or "")
    assert "is not a plugin" in (found["not-a-plugin"].error or "")
    assert f"cannot import {sample_plugins.__name__}:Missing" in (found["missing"].error or "")


async def test_duplicate_names_keep_the_first() -> None:
    found = [d for d in entry_points(("gamma", "Gamma"), ("gamma", "Beta")) if d.name == "gamma"]
    assert [d.status for d in found] == ["discovered", "failed"]
    assert "duplicate plugin name 'gamma'" in (found[1].error or "")
    assert "(sample_plugins:Beta) is ignored" in (found[1].error or "").replace(
        f"{sample_plugins.__name__}", "sample_plugins"
    )


async def test_enabled_and_disabled_lists(host) -> None:  # type: ignore[no-untyped-def]
    discovered = entry_points(("alpha", "Alpha"), ("beta", "Beta"), ("gamma", "Gamma"))
    only = host(discovered, enabled=["beta", "gamma"], disabled=["gamma"])
    await only.start(agents=False)
    assert {s.name: s.state for s in only.statuses} == {
        "alpha": "disabled",
        "beta": "loaded",
        "gamma": "disabled",
    }
    with pytest.raises(ConfigError, match="unknown plugins: nope; installed: alpha, beta, gamma"):
        await host(discovered, disabled=["nope"]).start(agents=False)


def test_sample_module_is_importable() -> None:
    assert sample_plugins.Alpha.manifest.dependencies == ("beta",)
