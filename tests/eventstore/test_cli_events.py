"""``agenthost events`` on an empty store and on odd arguments: errors, not tracebacks."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from host.cli_events import events_app
from host.eventstore import SqliteEventStore


def empty_store(tmp_path: Path) -> str:
    path = tmp_path / "events.sqlite3"

    async def create() -> None:
        await (await SqliteEventStore.open(path)).close()

    asyncio.run(create())
    return str(path)


def test_an_empty_store_lists_nothing(tmp_path: Path) -> None:
    store = empty_store(tmp_path)
    listed = CliRunner().invoke(events_app, ["list", "--store", store])
    assert listed.exit_code == 0 and "no events" in listed.output
    exported = CliRunner().invoke(events_app, ["export", "-", "--store", store])
    assert exported.exit_code == 0 and exported.output == ""


def test_export_to_an_unwritable_place_is_an_error_naming_it(tmp_path: Path) -> None:
    store = empty_store(tmp_path)
    target = tmp_path / "no such dir" / "trail.jsonl"
    result = CliRunner().invoke(events_app, ["export", str(target), "--store", store])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "error:" in result.output and "trail.jsonl" in result.output
