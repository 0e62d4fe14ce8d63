"""CLI conventions: global options after the subcommand, ``events`` reading the store the host's
configuration names (SQLite or PostgreSQL) and taking agent names, ``--json`` on every table,
plain columns when stdout is not a terminal."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from contracts.eventstore import DomainEvent
from host.cli import app
from host.cli_output import hoist
from host.eventstore import PostgresEventStore, SqliteEventStore
from host.pytest_plugin import fresh_schema, schema_uri
from host.runtime import agent_id_for

AGENTHOST = Path(sys.executable).with_name("agenthost")


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def test_hoist_moves_global_options_to_the_front() -> None:
    args = ["run", "--log-level", "debug", "--port", "1", "--config=x.yaml", "-c", "y.yaml"]
    assert hoist(args) == [
        "--log-level",
        "debug",
        "--config=x.yaml",
        "-c",
        "y.yaml",
        "run",
        *args[3:5],
    ]
    assert hoist(["events", "list", "--", "--config", "z"]) == [
        "events",
        "list",
        "--",
        "--config",
        "z",
    ]
    assert hoist(["run", "--log-level"]) == ["run", "--log-level"]  # no value: click reports it


def test_global_options_after_the_subcommand(tmp_path: Path) -> None:
    config = tmp_path / "my.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "d")}))
    code, output = invoke(
        "config", "show", "--json", "--log-level", "debug", "--config", str(config)
    )
    assert code == 0, output
    data = json.loads(output)
    assert data["file"] == str(config)
    assert data["values"]["logging.level"]["value"].lower() == "debug"
    assert data["values"]["logging.level"]["source"] == "command line"
    assert data["values"]["data_dir"]["value"] == str(tmp_path / "d")


def test_run_takes_log_level_after_the_command() -> None:
    """The exact line of the issue: `agenthost run --log-level debug` (a bad level stops it
    before anything starts, so the option was parsed, not refused as unknown)."""
    done = subprocess.run(
        [str(AGENTHOST), "run", "--log-level", "nonsense"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    assert "No such option" not in done.stderr, done.stderr
    assert done.returncode == 2 and "logging.level" in done.stderr, done.stderr


def events_for(*names: str) -> list[DomainEvent]:
    return [
        DomainEvent(aggregate_id=str(agent_id_for(name)), event_type="message:received",
                    data={"content": {"text": f"hello from {name}"}})
        for name in names
    ]  # fmt: skip


def test_events_reads_the_configured_sqlite_store_by_agent_name(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()

    async def record() -> None:
        store = await SqliteEventStore.open(data_dir / "events.sqlite3")
        for event in events_for("Ada", "Eliza"):
            await store.append_events(event.aggregate_id, [event])
        await store.close()

    asyncio.run(record())
    config = tmp_path / "host.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(data_dir)}))
    code, output = invoke("--config", str(config), "events", "list", "--agent", "ada", "--json")
    assert code == 0, output
    [line] = output.splitlines()
    assert json.loads(line)["data"]["content"]["text"] == "hello from Ada"

    code, output = invoke("events", "show", "Eliza", "--config", str(config))
    assert code == 0, output
    assert "hello from Eliza" in output and "hello from Ada" not in output

    code, output = invoke("events", "aggregates", "--json", "--config", str(config))
    assert code == 0, output
    assert {row["aggregate"] for row in json.loads(output)} == {
        str(agent_id_for("Ada")),
        str(agent_id_for("Eliza")),
    }
    code, output = invoke("events", "aggregates", "--config", str(config))
    header, *rows = output.splitlines()
    assert header.split() == ["aggregate", "version"] and len(rows) == 2
    assert all(row.split()[1] == "1" for row in rows)


@pytest.mark.postgres
def test_events_reads_postgres_when_the_memory_store_is_postgres(
    tmp_path: Path, pg_server_uri: str
) -> None:
    async def scenario() -> None:
        async with fresh_schema(pg_server_uri, "cli") as schema:
            url = schema_uri(pg_server_uri, schema)
            store = await PostgresEventStore.connect(url)
            for event in events_for("Ada", "Eliza"):
                await store.append_events(event.aggregate_id, [event])
            await store.close()
            config = tmp_path / "host.yaml"
            config.write_text(yaml.safe_dump({
                "data_dir": str(tmp_path / "empty"),
                "services": {"database": "postgres"},
                "plugins": {"postgres": {"url": url}},
            }))  # fmt: skip
            code, output = await asyncio.to_thread(
                invoke, "events", "list", "--agent", "Ada", "--json", "--config", str(config)
            )
            assert code == 0, output
            [line] = output.splitlines()
            assert json.loads(line)["data"]["content"]["text"] == "hello from Ada"

    asyncio.run(scenario())


def test_events_without_a_postgres_url_says_what_to_set(tmp_path: Path) -> None:
    config = tmp_path / "host.yaml"
    config.write_text(yaml.safe_dump({"services": {"database": "postgres"}}))
    code, output = invoke("--config", str(config), "events", "list")
    assert code == 1
    assert "plugins.postgres.url" in output and "--store" in output


def test_tables_are_plain_columns_when_piped(tmp_path: Path) -> None:
    long_dir = tmp_path / ("x" * 150)
    config = tmp_path / "host.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(long_dir)}))
    done = subprocess.run(
        [str(AGENTHOST), "config", "show", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["key", "value", "source"]
    [data_dir] = [row for row in rows if row.startswith("data_dir ")]
    assert str(long_dir) in data_dir and str(config) in data_dir  # one line, not wrapped
    assert not any(ch in done.stdout for ch in "│┃━─")
