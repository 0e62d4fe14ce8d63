"""A store plugin meant to serve that fails to load stops the start with its own error, instead
of the host running on another store (the in-memory one losing everything at exit); the start
log says which plugin serves each service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from loguru import logger

from host.app import Host
from host.config import ConfigError, load_config
from host.stores import StoreUnavailableError

AGENTHOST = Path(sys.executable).with_name("agenthost")
BAD_SQLITE = {"AGENTHOST_PLUGINS__SQLITE__BUSY_TIMEOUT": "abc"}
REASON = (
    "plugins.sqlite.busy_timeout (from AGENTHOST_PLUGINS__SQLITE__BUSY_TIMEOUT): Input should be"
    " a valid number, unable to parse string as a number"
)


def environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "AGENTHOST_DATA_DIR": str(tmp_path / "data"),
        "AGENTHOST_AGENTS__CHARACTERS_DIR": str(tmp_path / "no-characters"),
        "AGENTHOST_HTTP__ENABLED": "false",
        **extra,
    }


async def start(env: dict[str, str]) -> tuple[Host, list[str]]:
    """A host started from `env` (stopped again when the start fails), and its INFO+ log."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO")
    host = Host(load_config(None, environ=env))
    try:
        await host.start()
    except BaseException:
        await host.stop()
        raise
    finally:
        logger.remove(sink)
    return host, lines


@pytest.mark.parametrize(
    ("disabled", "instead"),
    [('["postgres"]', "inmemory"), ("[]", "postgres")],
    ids=["on-inmemory", "on-postgres"],
)
async def test_a_failing_default_store_fails_the_start_with_its_own_error(
    tmp_path: Path, disabled: str, instead: str
) -> None:
    env = environ(tmp_path, **BAD_SQLITE, AGENTHOST_PLUGINS__DISABLED=disabled)
    with pytest.raises(StoreUnavailableError) as caught:
        await start(env)
    assert isinstance(caught.value, ConfigError)  # the CLI exits with code 2
    first = str(caught.value).splitlines()[:4]
    assert first == [
        "plugin sqlite, the store for service 'database' (the default: priority 100, the highest"
        " of the enabled providers), failed to load, and the host does not fall back to another"
        f" store (it would run on plugin {instead} instead):",
        "  invalid settings for plugin sqlite:",
        f"    {REASON}",
        first[3],
    ]
    assert first[3].startswith("  fix it, or choose another with services.database (")
    assert "url is not set" not in first[0]
    assert not (tmp_path / "data" / "agenthost.sqlite3").exists()


async def test_a_failing_pinned_store_fails_the_start(tmp_path: Path) -> None:
    env = environ(
        tmp_path,
        AGENTHOST_SERVICES='{"database": "postgres"}',
        AGENTHOST_PLUGINS__POSTGRES__POOL_MIN="5",
        AGENTHOST_PLUGINS__POSTGRES__POOL_MAX="2",
    )
    with pytest.raises(StoreUnavailableError, match=r"pinned by config services\.database") as e:
        await start(env)
    assert "pool_min (5) exceeds pool_max (2)" in str(e.value)


async def test_an_in_memory_store_serves_when_pinned_and_the_log_names_each_service(
    tmp_path: Path,
) -> None:
    env = environ(tmp_path, **BAD_SQLITE, AGENTHOST_SERVICES='{"database": "inmemory"}')
    host, lines = await start(env)
    try:
        assert host.agents is not None and host.agents.get("Eliza").database.backend == "inmemory"
    finally:
        await host.stop()
    services = [line for line in lines if line.startswith("service '")]
    assert services == [
        "service 'database': using plugin inmemory (pinned by config services.database) over"
        " plugin postgres (priority 50)",
        "service 'event_store': using plugin audit",
        "service 'knowledge': using plugin knowledge",
    ]


async def test_the_default_start_logs_one_line_per_service(tmp_path: Path) -> None:
    host, lines = await start(environ(tmp_path))
    await host.stop()
    services = [line for line in lines if line.startswith("service '")]
    assert services == [
        "service 'database': using plugin sqlite (priority 100) over plugin postgres"
        " (priority 50), plugin inmemory (priority 10)",
        "service 'event_store': using plugin audit",
        "service 'knowledge': using plugin knowledge",
    ]


def test_the_cli_exits_2_naming_the_field_and_plugins_list_still_lists_it(
    tmp_path: Path,
) -> None:
    env = {**os.environ, **environ(tmp_path, **BAD_SQLITE), "AGENTHOST_PLUGINS__DISABLED": "[]"}
    ran = subprocess.run(
        [str(AGENTHOST), "run", "--port", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 2, ran.stderr
    assert REASON in ran.stderr and "Traceback" not in ran.stderr
    assert "error: plugin sqlite, the store for service 'database'" in ran.stderr
    listed = subprocess.run(
        [str(AGENTHOST), "plugins", "list", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["sqlite"]["status"] == "failed" and REASON in rows["sqlite"]["error"]
