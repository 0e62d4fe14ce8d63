"""Loader: order by dependencies then priority, failures isolated with the chain named,
teardown in reverse, rollback of a failed setup, unknown names in config."""

from __future__ import annotations

import asyncio
import io
import itertools
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import importlib_metadata
import pytest
from loguru import logger

from contracts.config import HostConfig, LoggingSettings, PluginsSettings
from contracts.events import AGENT_STARTED, PLUGIN_FAILED, AgentPayload, PluginFailedPayload
from host.app import Host
from host.config import ConfigError, LoadedConfig, load_config
from host.discovery import Discovered, from_entry_points
from host.loader import select
from host.logs import configure_logging

from . import sample_plugins
from .sample_plugins import JOURNAL, SESSION

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


async def test_a_chain_depending_on_a_cycle_fails_and_the_rest_loads(host) -> None:  # type: ignore[no-untyped-def]
    """A plugin two steps from a cycle (after-after-cycle -> after-cycle -> cycle-x) fails
    with its reason; ordering did not crash the whole start on the failed names."""
    app = host(
        entry_points(
            ("cycle-x", "CycleX"), ("cycle-y", "CycleY"), ("after-cycle", "AfterCycle"),
            ("after-after-cycle", "AfterAfterCycle"), ("gamma", "Gamma"),
        )
    )  # fmt: skip
    await app.start(agents=False)
    status = {s.name: s for s in app.statuses}
    assert status["after-cycle"].error == "depends on cycle-x, which failed"
    assert status["after-after-cycle"].state == "failed"
    assert status["after-after-cycle"].error == "depends on after-cycle, which failed"
    assert status["gamma"].state == "loaded"
    assert JOURNAL == ["setup:gamma"]


async def test_a_failed_setup_leaves_none_of_its_own_subscriptions(host) -> None:  # type: ignore[no-untyped-def]
    """Subscriptions a plugin made in its setup() before raising are removed with it: a failed
    plugin's handlers must not go on running."""
    app = host(entry_points(("subscribes-then-fails", "SubscribesThenFails"), ("gamma", "Gamma")))
    await app.start(agents=False)
    assert app.loader.statuses["subscribes-then-fails"].stage == "setup"
    owners = {sub.owner for sub in app.events.subscriptions()}
    assert "subscribes-then-fails" not in owners
    await app.events.emit(AGENT_STARTED, AgentPayload(agent_id=uuid4(), name="Eliza"))
    assert not [j for j in JOURNAL if "subscribes-then-fails" in j]


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


async def test_services_of_a_plugin_are_torn_down_when_it_unloads_before_what_it_uses(host) -> None:  # type: ignore[no-untyped-def]
    """Shutdown unregisters each plugin in reverse load order, its services' async tear-downs
    awaited there: a session service closes while the pool plugin it uses is still up."""
    app = host(entry_points(("pool", "PoolPlugin"), ("sessions", "SessionPlugin")))
    await app.start(agents=False)
    assert (await app.container.aresolve(SESSION)).pool.open
    await app.stop()
    assert JOURNAL[-3:] == ["session closed", "teardown:sessions", "teardown:pool"]


async def test_a_failure_quoting_a_secret_is_kept_and_emitted_masked(host) -> None:  # type: ignore[no-untyped-def]
    """The status (``plugins list``, ``GET /plugins``) and ``plugin:failed`` (recorded by the
    audit trail) carry the error text past the log scrubbing: its secrets are masked there."""
    app = host(
        entry_points(("quotes-secret", "FailsQuotingItsSecret")),
        **{"quotes-secret": {"auth": "tok-8f2c91"}},
    )
    failures = []
    app.events.on(PLUGIN_FAILED, failures.append)
    await app.start(agents=False)
    status = app.loader.statuses["quotes-secret"]
    assert status.error == "ConnectionError: cannot reach https://**********@api"
    assert [f.error for f in failures] == [status.error]


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
    with pytest.raises(ConfigError) as info:
        await host(discovered, enabled=["beta", "nope", "zap"], disabled=["ghost"]).start(
            agents=False
        )
    assert str(info.value) == (
        "invalid configuration (2 problems):\n"
        "  plugins.enabled (from config): unknown plugins nope, zap;"
        " installed: alpha, beta, gamma\n"
        "  plugins.disabled (from config): unknown plugin ghost; installed: alpha, beta, gamma"
    )


def test_unknown_names_error_says_where_the_list_was_set(tmp_path: Path) -> None:
    path = tmp_path / "agenthost.yaml"
    path.write_text("plugins:\n  disabled: [gamma, nope]\n")
    discovered = entry_points(("gamma", "Gamma"))
    loaded = load_config(path, environ={})
    with pytest.raises(
        ConfigError, match=rf"plugins\.disabled \(from {path}\): unknown plugin nope;"
    ):
        select(discovered, loaded.config, loaded)
    from_env = load_config(None, environ={"AGENTHOST_PLUGINS__ENABLED": '["nope"]'})
    with pytest.raises(ConfigError, match=r"plugins\.enabled \(from AGENTHOST_PLUGINS__ENABLED\)"):
        select(discovered, from_env.config, from_env)


def test_a_section_for_no_installed_plugin_is_warned(tmp_path: Path) -> None:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(f"{m.record['level'].name} {m.record['message']}"))
    try:
        config = HostConfig(
            plugins=PluginsSettings.model_validate({"gamma": {"a": 1}, "gamam": {"a": 1}})
        )
        assert select(entry_points(("gamma", "Gamma")), config) == (["gamma"], [])
    finally:
        logger.remove(sink)
    assert lines == [
        "WARNING config plugins.gamam (from config): no installed plugin is called gamam, its"
        " settings are unused (did you mean gamma?); installed: gamma"
    ]


def test_sample_module_is_importable() -> None:
    assert sample_plugins.Alpha.manifest.dependencies == ("beta",)


async def test_a_raising_factory_fails_its_plugin_only(host) -> None:  # type: ignore[no-untyped-def]
    app = host(entry_points(("raising-factory", "raising_factory"), ("gamma", "recording_factory")))
    await app.start(agents=False)
    status = {s.name: s for s in app.statuses}
    assert status["gamma"].state == "loaded"
    assert (status["raising-factory"].state, status["raising-factory"].stage) == ("failed", "load")
    assert status["raising-factory"].error == (
        "ValueError: factory refuses: no weather API configured"
    )
    assert JOURNAL == ["setup:gamma"]


def test_an_invalid_manifest_is_isolated_naming_each_problem() -> None:
    found = {d.name: d for d in entry_points(("invalid-manifest", "InvalidManifest"))}
    error = found["invalid-manifest"].error or ""
    assert error.startswith(f"invalid manifest in {sample_plugins.__name__}:InvalidManifest: ")
    assert "priority: Input should be a valid integer" in error
    assert "colour: Extra inputs are not permitted" in error


async def test_a_dependency_disabled_in_config_fails_its_dependents(host) -> None:  # type: ignore[no-untyped-def]
    app = host(entry_points(("alpha", "Alpha"), ("beta", "Beta")), disabled=["beta"])
    await app.start(agents=False)
    status = {s.name: s for s in app.statuses}
    assert status["beta"].state == "disabled"
    assert status["alpha"].error == "depends on beta, which is disabled in config"
    assert JOURNAL == []


async def test_cycle_error_names_the_whole_chain(host) -> None:  # type: ignore[no-untyped-def]
    app = host(entry_points(("cycle-x", "CycleX"), ("cycle-y", "CycleY")))
    await app.start(agents=False)
    errors = {s.error for s in app.statuses}
    assert errors <= {
        "dependency cycle: cycle-x -> cycle-y -> cycle-x",
        "dependency cycle: cycle-y -> cycle-x -> cycle-y",
    }
    assert len(errors) == 1


async def test_a_plugin_loads_after_the_provider_of_a_service_it_needs(host) -> None:  # type: ignore[no-untyped-def]
    app = host(
        entry_points(
            ("clock-user", "ClockUser"), ("gamma", "Gamma"), ("clock-provider", "ClockProvider")
        )
    )
    await app.start(agents=False)
    assert JOURNAL == ["setup:gamma", "setup:clock-provider", "setup:clock-user"]
    user = app.loader.loaded["clock-user"].instance
    assert user.clock is app.container.resolve(sample_plugins.CLOCK)  # type: ignore[attr-defined]


async def test_a_plugin_needing_an_unprovided_service_fails_with_the_reason(host) -> None:  # type: ignore[no-untyped-def]
    app = host(entry_points(("clock-user", "ClockUser"), ("gamma", "Gamma")))
    await app.start(agents=False)
    status = {s.name: s for s in app.statuses}
    assert status["gamma"].state == "loaded"
    assert status["clock-user"].state == "failed"
    error = status["clock-user"].error or ""
    assert error.startswith(
        "MissingDependencyError: plugin clock-user needs Clock (parameter `clock` of"
        " ClockUser.__init__), provided by nothing; installed providers: "
    )
    assert "settings (host)" in error


async def test_a_cycle_through_constructor_services_is_named(host) -> None:  # type: ignore[no-untyped-def]
    app = host(
        entry_points(("ring-one", "RingOne"), ("ring-two", "RingTwo"), ("ring-three", "RingThree"))
    )
    await app.start(agents=False)
    errors = {s.name: s.error or "" for s in app.statuses}
    assert {s.state for s in app.statuses} == {"failed"}
    cycles = [e for e in errors.values() if "services in turn" in e]
    assert len(cycles) == 1  # the first to load; the others fail because it did
    ring = re.search(r"in turn \((.*)\)$", cycles[0])
    assert ring is not None
    names = ring.group(1).split(" -> ")
    assert names[0] == names[-1] and sorted(names[:-1]) == ["ring-one", "ring-three", "ring-two"]
    needs = {"ring-one": "ring-two", "ring-two": "ring-three", "ring-three": "ring-one"}
    assert all(needs[a] == b for a, b in itertools.pairwise(names))
    assert sum("which failed" in e for e in errors.values()) == 2


@pytest.mark.parametrize(
    ("target", "disabled", "why"),
    [
        ("ClockProviderFailing", [], "which failed"),
        ("ClockProvider", ["clock-provider"], "which is disabled in config"),
    ],
)
async def test_a_missing_service_names_the_plugin_meant_to_provide_it(  # type: ignore[no-untyped-def]
    host, target: str, disabled: list[str], why: str
) -> None:
    app = host(
        entry_points(("clock-user", "ClockUser"), ("clock-provider", target)), disabled=disabled
    )
    await app.start(agents=False)
    error = {s.name: s.error for s in app.statuses}["clock-user"] or ""
    assert error.startswith("MissingDependencyError: plugin clock-user needs Clock")
    assert error.endswith(f"; 'test.clock' comes from plugin clock-provider, {why}")


async def test_a_plugin_needing_its_own_service_is_told_why(host) -> None:  # type: ignore[no-untyped-def]
    app = host(entry_points(("own-clock", "NeedsItsOwnClock")))
    await app.start(agents=False)
    error = app.statuses[0].error or ""
    assert error.endswith(
        "; 'test.clock' comes from plugin own-clock, itself: its services are bound only once it"
        " is constructed"
    )


async def test_invalid_plugin_settings_fail_that_plugin_naming_key_and_source(
    tmp_path: Path,
) -> None:
    path = tmp_path / "agenthost.yaml"
    path.write_text("plugins:\n  forecast:\n    retries: many\n    api_key: sk-very-secret\n")
    loaded = load_config(path, environ={})
    app = Host(loaded, discovered=entry_points(("forecast", "Forecast"), ("gamma", "Gamma")))
    try:
        await app.start(agents=False)
        status = {s.name: s for s in app.statuses}
        assert status["gamma"].state == "loaded"
        assert (status["forecast"].state, status["forecast"].stage) == ("failed", "load")
        assert status["forecast"].error == (
            "invalid settings for plugin forecast:\n"
            f"  plugins.forecast.city: required; set it in {path} or"
            " AGENTHOST_PLUGINS__FORECAST__CITY\n"
            f"  plugins.forecast.retries (from {path}): Input should be a valid integer, unable to"
            " parse string as an integer"
        )
    finally:
        await app.stop()
    good = load_config(None, environ={"AGENTHOST_PLUGINS__FORECAST__CITY": "Oslo"})
    app = Host(good, discovered=entry_points(("forecast", "Forecast")))
    try:
        await app.start(agents=False)
        plugin = app.loader.loaded["forecast"].instance
        assert plugin.settings.city == "Oslo"  # type: ignore[attr-defined]
    finally:
        await app.stop()


async def test_a_duplicate_name_is_listed_failed_beside_the_one_that_loads(
    tmp_path: Path,
) -> None:
    """Two real distributions register the entry point `gamma`: the first in discovery order
    loads, the other gets its own failed row naming both distributions, and `plugin:failed`."""
    for dist in ("gamma-one", "gamma-two"):
        info = tmp_path / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        target = "Gamma" if dist == "gamma-one" else "Beta"
        (info / "entry_points.txt").write_text(
            f"[agenthost.plugins]\ngamma = {sample_plugins.__name__}:{target}\n"
        )
    dists = sorted(importlib_metadata.distributions(path=[str(tmp_path)]), key=lambda d: d.name)
    found = from_entry_points(ep for d in dists for ep in d.entry_points.select(group=GROUP))
    app = Host(LoadedConfig(HostConfig(), None), discovered=found)
    failures: list[str] = []
    app.events.on(PLUGIN_FAILED, lambda p: failures.append(f"{p.name}/{p.distribution}/{p.stage}"))
    try:
        await app.start(agents=False)
        rows = [(s.name, s.distribution, s.state) for s in app.statuses]
        assert sorted(rows) == [("gamma", "gamma-one", "loaded"), ("gamma", "gamma-two", "failed")]
        failed = next(s for s in app.statuses if s.state == "failed")
        assert failed.error == (
            "duplicate plugin name 'gamma': already provided by distribution gamma-one"
            f" ({sample_plugins.__name__}:Gamma); this one ({sample_plugins.__name__}:Beta) is"
            " ignored"
        )
        assert app.loader.statuses["gamma"].state == "loaded"
        assert failures == ["gamma/gamma-two/discover"]
    finally:
        await app.stop()


async def test_a_plugin_settings_secret_is_masked_in_its_log_lines() -> None:
    sink = io.StringIO()
    configure_logging(LoggingSettings(level="INFO"), sink=sink)
    config = HostConfig(plugins=PluginsSettings.model_validate({"leaky": {"auth": "hunter2-auth"}}))
    app = Host(LoadedConfig(config, None), discovered=entry_points(("leaky", "Leaky")))
    try:
        await app.start(agents=False)
    finally:
        await app.stop()
        configure_logging()
    assert "| leaky | connecting with **********" in sink.getvalue()
    assert "hunter2-auth" not in sink.getvalue()


def test_discovery_reads_each_distributions_metadata_once(tmp_path: Path) -> None:
    """One distribution providing several plugins: each gets its name and version, and the
    METADATA file (a README long description, for agenthost's own) is parsed once, not twice a
    plugin."""
    info = tmp_path / "many_plugins-2.5.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: many-plugins\nVersion: 2.5\n")
    (info / "entry_points.txt").write_text(
        "[agenthost.plugins]\n"
        + "".join(f"{name} = {sample_plugins.__name__}:{target}\n" for name, target in PAIRS)
    )
    [dist] = importlib_metadata.distributions(path=[str(tmp_path)])
    reads: list[str] = []
    original = type(dist).read_text

    def counting(self: Any, filename: str) -> str | None:
        reads.append(filename)
        return original(self, filename)

    eps = list(dist.entry_points.select(group=GROUP))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(dist), "read_text", counting)
        found = from_entry_points(eps)
    assert [(d.name, d.distribution, d.version) for d in found] == [
        (name, "many-plugins", "2.5") for name, _ in sorted(PAIRS)
    ]
    assert reads.count("METADATA") == 1


PAIRS = (("alpha", "Alpha"), ("beta", "Beta"), ("gamma", "Gamma"))


async def test_a_setup_that_hangs_fails_its_plugin_at_its_limit_and_the_rest_load(host) -> None:  # type: ignore[no-untyped-def]
    """A setup past ``plugins.setup_timeout`` is cancelled, its plugin fails at stage setup
    with the setting named (nothing of it registered), a WARNING names it while it runs long,
    and the others load: one hung connection does not keep the host from serving."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(f"{m.record['level'].name} {m.record['message']}"))
    try:
        app = host(
            entry_points(("hangs-in-setup", "HangsInSetup"), ("gamma", "Gamma")),
            setup_timeout=0.4,
        )
        await app.start(agents=False)
    finally:
        logger.remove(sink)
    status = {s.name: s for s in app.statuses}
    hung = status["hangs-in-setup"]
    assert hung.state == "failed" and hung.stage == "setup"
    assert "did not finish within 0.4 s (plugins.setup_timeout)" in (hung.error or "")
    assert status["gamma"].state == "loaded"
    assert "cancelled:hangs-in-setup" in JOURNAL
    assert app.components.owner_of("provider", "hangs-in-setup-provider") is None
    assert any(
        line.startswith("WARNING plugin hangs-in-setup setup still running after 0.1 s")
        for line in lines
    )
    assert any(
        line.startswith("ERROR plugin hangs-in-setup") and "plugins.setup_timeout" in line
        for line in lines
    )


async def test_a_plugins_own_timeout_in_setup_is_its_own_error(host) -> None:  # type: ignore[no-untyped-def]
    app = host(entry_points(("times-out-itself", "TimesOutItself")), setup_timeout=30)
    await app.start(agents=False)
    error = {s.name: s for s in app.statuses}["times-out-itself"].error or ""
    assert "connect to db.example:5432 timed out" in error
    assert "setup_timeout" not in error


async def test_a_setup_holding_the_loop_is_named_once_it_returns(host) -> None:  # type: ignore[no-untyped-def]
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(f"{m.record['level'].name} {m.record['message']}"))
    try:
        app = host(entry_points(("blocks-in-setup", "BlocksInSetup")), setup_timeout=0.4)
        await app.start(agents=False)
    finally:
        logger.remove(sink)
    assert {s.name: s for s in app.statuses}["blocks-in-setup"].state == "loaded"
    assert any(
        line.startswith("WARNING plugin blocks-in-setup setup held the event loop for 0.3")
        for line in lines
    ), lines


async def test_a_teardown_that_hangs_is_given_up_and_the_others_still_run(host) -> None:  # type: ignore[no-untyped-def]
    app = host(
        entry_points(("hangs-in-teardown", "HangsInTeardown"), ("gamma", "Gamma")),
        teardown_timeout=0.3,
    )
    failures: list[PluginFailedPayload] = []
    app.events.on(PLUGIN_FAILED, failures.append)
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(f"{m.record['level'].name} {m.record['message']}"))
    await app.start(agents=False)
    try:
        await app.stop()
    finally:
        logger.remove(sink)
    assert "teardown:hangs-in-teardown" in JOURNAL and "teardown:gamma" in JOURNAL
    assert [(f.name, f.stage) for f in failures] == [("hangs-in-teardown", "teardown")]
    assert any(
        line.startswith("ERROR plugin hangs-in-teardown teardown failed: teardown() did not")
        and "plugins.teardown_timeout" in line
        for line in lines
    ), lines


async def test_a_setup_that_swallows_its_cancellation_is_left_behind_and_the_host_serves(
    host,  # type: ignore[no-untyped-def]
) -> None:
    """A retry loop catching everything, its cancellation included: after the limit and a
    grace period the host stops waiting for it (an ERROR names it) and loads the rest."""
    from host import loader

    app = host(
        entry_points(("swallows-cancellation", "SwallowsCancellation"), ("gamma", "Gamma")),
        setup_timeout=0.2,
    )
    grace, loader.GRACE = loader.GRACE, 0.2
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(f"{m.record['level'].name} {m.record['message']}"))
    try:
        await asyncio.wait_for(app.start(agents=False), 10)
    finally:
        loader.GRACE = grace
        logger.remove(sink)
        sample_plugins.SwallowsCancellation.stop = True
    status = {s.name: s for s in app.statuses}
    assert status["swallows-cancellation"].state == "failed"
    assert status["swallows-cancellation"].stage == "setup"
    assert status["gamma"].state == "loaded"
    assert "swallowed:swallows-cancellation" in JOURNAL
    assert any("ignored its cancellation; left running" in line for line in lines), lines
    await asyncio.sleep(0.1)  # its loop sees the flag and ends: nothing is left behind
    assert not loader._ABANDONED


async def test_a_teardown_holding_the_loop_is_named(host) -> None:  # type: ignore[no-untyped-def]
    app = host(entry_points(("blocks-in-teardown", "BlocksInTeardown")), teardown_timeout=0.4)
    lines: list[str] = []
    await app.start(agents=False)
    sink = logger.add(lambda m: lines.append(f"{m.record['level'].name} {m.record['message']}"))
    try:
        await app.stop()
    finally:
        logger.remove(sink)
    assert any(
        line.startswith("WARNING plugin blocks-in-teardown teardown held the event loop for 0.3")
        for line in lines
    ), lines
