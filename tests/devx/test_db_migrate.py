"""``agenthost db migrate``: the configured memory store and event store migrated now, each step
shown as it runs, what was done printed; a second run does nothing. On SQLite files and on a
real PostgreSQL (pgserver)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from builtin_plugins.postgres.schema import MIGRATIONS as PG_MIGRATIONS
from builtin_plugins.sqlite.schema import MIGRATIONS, SCHEMA_VERSION
from contracts.config import HostConfig
from host.cli import app
from host.db_migrate import migrate_stores
from host.pytest_plugin import fresh_schema, schema_uri


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def test_db_migrate_on_sqlite_then_again(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "host.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(data)}))
    code, output = invoke("db", "migrate", "--config", str(config))
    assert code == 0, output
    memory = data / "agenthost.sqlite3"
    assert f"memory store (sqlite {memory}): applied {len(MIGRATIONS)} migration(s)" in output
    assert all(description in output for _, description, _ in MIGRATIONS)
    assert "event store (sqlite" in output and "applied 1 migration(s)" in output
    with sqlite3.connect(memory) as conn:
        assert conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone() == (
            SCHEMA_VERSION,
        )
    events = next(data.glob("events*.sqlite3"))
    with sqlite3.connect(events) as conn:
        assert conn.execute("SELECT count(*) FROM event_log").fetchone() == (0,)

    code, output = invoke("db", "migrate", "--json", "--config", str(config))
    assert code == 0, output
    again = json.loads(output)
    assert [(d["store"], d["backend"], d["applied"]) for d in again] == [
        ("memory", "sqlite", []),
        ("events", "sqlite", []),
    ]
    assert again[0]["version"] == SCHEMA_VERSION


def test_each_step_is_reported_as_it_starts(tmp_path: Path) -> None:
    steps: list[tuple[str, int, int, str]] = []
    config = HostConfig(data_dir=tmp_path)

    def step(store: str, n: int, of: int, description: str) -> None:
        steps.append((store, n, of, description))

    asyncio.run(migrate_stores(config, on_step=step))
    total = len(MIGRATIONS)
    assert steps == [
        *(("memory", n, total, m[1]) for n, m in enumerate(MIGRATIONS, 1)),
        ("events", 1, 1, "event log tables and indexes"),
    ]
    steps.clear()
    asyncio.run(migrate_stores(config, on_step=step))
    assert steps == []


def test_db_migrate_without_audit_and_with_a_bad_url(tmp_path: Path) -> None:
    config = tmp_path / "host.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path),
                "plugins": {
                    "disabled": ["sqlite", "audit"],
                    "postgres": {"url": "postgresql://nobody:s3cret@127.0.0.1:1/none"},
                },
            }
        )
    )
    code, output = invoke("db", "migrate", "--config", str(config))
    assert code == 1, output
    assert "127.0.0.1" in output and "s3cret" not in output and "Traceback" not in output


def test_db_migrate_on_postgresql(tmp_path: Path, pg_server_uri: str) -> None:
    async def body() -> list[Any]:
        async with fresh_schema(pg_server_uri, "migrate") as schema:
            url = schema_uri(pg_server_uri, schema)
            config = tmp_path / "host.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "data_dir": str(tmp_path),
                        "plugins": {"disabled": ["sqlite"], "postgres": {"url": url}},
                    }
                )
            )
            loop = asyncio.get_running_loop()
            runs = []
            for _ in range(2):
                code, output = await loop.run_in_executor(
                    None, invoke, "db", "migrate", "--json", "--config", str(config)
                )
                assert code == 0, output
                runs.append(json.loads(output))
            return runs

    first, second = asyncio.run(body())
    assert [(d["store"], d["backend"]) for d in first] == [
        ("memory", "postgres"),
        ("events", "postgres"),
    ]
    assert first[0]["applied"] == [m[1] for m in PG_MIGRATIONS]
    assert first[1]["applied"] == ["event log tables and indexes"]
    assert [d["applied"] for d in second] == [[], []]
