"""A separately packaged plugin installed with pip shows up, is injected and configured, serves;
a broken one is listed as failed with its reason while the host keeps running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from uuid import uuid4

from loguru import logger

from contracts.storage import DATABASE
from host.app import Host
from host.config import load_config
from host.discovery import discover
from host.pytest_plugin import store_backends


def test_discovery_reads_name_version_and_distribution(plugin_path: Path) -> None:
    found = {d.name: d for d in discover()}
    weather = found["weather"]
    assert (weather.distribution, weather.version, weather.status) == (
        "agenthost-weather",
        "1.2.3",
        "discovered",
    )
    assert weather.manifest is not None and weather.manifest.version == "1.2.3"
    broken = found["broken"]
    assert broken.status == "failed" and broken.distribution == "agenthost-broken"
    assert "No module named 'agenthost_missing_dependency'" in (broken.error or "")
    assert broken.origin["file"].endswith("agenthost_broken/__init__.py")


async def test_host_injects_configures_and_uses_the_external_plugin(
    plugin_path: Path, tmp_path: Path
) -> None:
    loaded = load_config(
        None,
        environ={
            "AGENTHOST_DATA_DIR": str(tmp_path),
            "AGENTHOST_PLUGINS__WEATHER__CITY": "Lyon",
            "AGENTHOST_AGENTS__CHARACTERS_DIR": str(tmp_path / "none"),
        },
    )
    host = Host(loaded)
    await host.start()
    try:
        status = {s.name: s for s in host.statuses}
        assert status["weather"].state == "loaded" and status["weather"].version == "1.2.3"
        assert status["broken"].state == "failed"
        weather = host.loader.loaded["weather"].instance
        assert weather.db is await host.container.aresolve(DATABASE)  # type: ignore[attr-defined]
        assert weather.db.backend == "sqlite"  # type: ignore[attr-defined]
        assert weather.settings.city == "Lyon"  # type: ignore[attr-defined]
        records: list[dict[str, object]] = []
        sink = logger.add(lambda m: records.append(dict(m.record["extra"])))
        try:
            weather.log.info("checking the weather")  # type: ignore[attr-defined]
        finally:
            logger.remove(sink)
        assert records == [{"plugin": "weather"}]
        assert host.agents is not None
        runtime = host.agents.get("Eliza")
        message = runtime.new_message("How is the weather?", room_id=uuid4(), entity_id=uuid4())
        state = await runtime.compose_state(message)
        assert "It is sunny in Lyon." in state.text
        reply = await runtime.process_message(message)
        assert reply.responded and reply.text
    finally:
        await host.stop()


def test_cli_lists_plugins_from_a_real_process(plugin_path: Path, tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("agenthost")
    env = {**os.environ, "PYTHONPATH": str(plugin_path), "AGENTHOST_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [str(script), "plugins", "list", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["weather"]["status"] == "loaded"
    assert rows["weather"]["distribution"] == "agenthost-weather"
    assert rows["broken"]["status"] == "failed"
    assert "agenthost_missing_dependency" in rows["broken"]["error"]
    assert rows["sqlite"]["status"] == "loaded" and rows["eliza"]["status"] == "loaded"
    assert "plugin broken (distribution agenthost-broken) failed" in done.stderr


def test_cli_exit_codes(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("agenthost")
    bad = tmp_path / "bad.yaml"
    bad.write_text("http:\n  port: [1\n")
    done = subprocess.run(
        [str(script), "--config", str(bad), "config", "show"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"invalid YAML in {bad}:3" in done.stderr
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("agenthost ")


def test_the_plugin_package_runs_its_own_tests_with_the_kit(plugin_path: Path) -> None:
    """An external package's tests use agenthost's fixtures through the pytest11 entry point."""
    package = Path(__file__).resolve().parents[1] / "fixtures" / "agenthost-weather"
    env = {**os.environ, "PYTHONPATH": str(plugin_path)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
         "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function",
         str(package / "tests")],
        cwd=package, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    # the action test, and the store test on every installed backend (postgres via pgserver)
    assert f"{1 + len(store_backends())} passed" in done.stdout


def test_cli_unknown_plugin_names_exit_2_naming_the_file(plugin_path: Path, tmp_path: Path) -> None:
    config = tmp_path / "agenthost.yaml"
    config.write_text("plugins:\n  disabled: [weather, wether]\n")
    env = {**os.environ, "PYTHONPATH": str(plugin_path), "AGENTHOST_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("agenthost")), "-c", str(config), "plugins", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert f"plugins.disabled (from {config}): unknown plugin wether; installed: audit," in (
        done.stderr
    )
    assert "weather" in done.stderr.partition("installed:")[2]
    assert "Traceback" not in done.stderr


def test_cli_config_show_json_sources_and_masked_secrets(plugin_path: Path, tmp_path: Path) -> None:
    config = tmp_path / "agenthost.yaml"
    config.write_text("http:\n  port: 8123\nlogging:\n  json: false\n")
    env = {
        **os.environ,
        "PYTHONPATH": str(plugin_path),
        "AGENTHOST_HTTP__API_KEY": "key-from-env-1234",
        "AGENTHOST_PLUGINS__OPENAI__API_KEY": "sk-plugin-secret-99",
        "AGENTHOST_PLUGINS__WEATHER__AUTH": "weather-auth-777",  # SecretStr by type, not name
        "AGENTHOST_PLUGINS__WEATHER__CITY": "Lyon",
    }
    done = subprocess.run(
        [str(Path(sys.executable).with_name("agenthost")), "--config", str(config), "--log-level",
         "warning", "config", "show", "--json"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    values = shown["values"]
    assert shown["file"] == str(config)
    assert values["http.port"] == {"value": 8123, "source": f"file:{config}"}
    assert values["logging.json"] == {"value": False, "source": f"file:{config}"}
    assert values["logging.level"] == {"value": "WARNING", "source": "command line"}
    assert values["http.api_key"] == {
        "value": "**********",
        "source": "env:AGENTHOST_HTTP__API_KEY",
    }
    assert values["plugins.openai.api_key"]["value"] == "**********"
    assert values["agents.history"] == {"value": 10, "source": "default"}
    assert "key-from-env-1234" not in done.stdout + done.stderr
    assert "sk-plugin-secret-99" not in done.stdout + done.stderr
    assert values["plugins.weather.auth"]["value"] == "**********"
    assert values["plugins.weather.city"]["value"] == "Lyon"
    assert "weather-auth-777" not in done.stdout + done.stderr
