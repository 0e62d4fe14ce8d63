"""Progress on long CLI work: drawn on stderr when it is a terminal (FORCE_COLOR stands in for
one here), never mixed into stdout, absent when stderr is piped."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import yaml

from contracts.eventstore import DomainEvent
from host.eventstore import SqliteEventStore

AGENTHOST = Path(sys.executable).with_name("agenthost")


def agenthost(*args: str | Path, terminal: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    if terminal:
        env["FORCE_COLOR"] = "1"
    return subprocess.run(
        [str(AGENTHOST), *map(str, args)], capture_output=True, text=True, timeout=120, env=env
    )


def test_event_export_shows_progress_on_stderr_only(tmp_path: Path) -> None:
    store_path = tmp_path / "events.sqlite3"

    async def record() -> None:
        store = await SqliteEventStore.open(store_path)
        events = [DomainEvent(aggregate_id="a", event_type="t", data={"i": i}) for i in range(600)]
        await store.append_events("a", events)
        await store.close()

    asyncio.run(record())
    out = tmp_path / "trail.jsonl"
    shown = agenthost("events", "export", out, "--store", store_path, terminal=True)
    assert shown.returncode == 0, shown.stderr
    assert "exporting events" in shown.stderr and "600/600" in shown.stderr
    assert len(out.read_text().splitlines()) == 600
    piped = agenthost("events", "export", "-", "--store", store_path, terminal=True)
    assert piped.stdout.count("\n") == 600 and "exporting" not in piped.stdout  # stdout is data
    quiet = agenthost("events", "export", out, "--store", store_path, terminal=False)
    assert quiet.returncode == 0 and "exporting" not in quiet.stderr


def test_db_index_builds_the_configured_store_with_progress(tmp_path: Path) -> None:
    config = tmp_path / "host.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"),
                                      "plugins": {"enabled": ["sqlite", "eliza"]}}))  # fmt: skip
    built = agenthost("--config", config, "db", "index", "--type", "hnsw", terminal=True)
    assert built.returncode == 0, built.stderr
    assert "hnsw index of messages built in" in built.stdout
    assert "building the hnsw index of messages" in built.stderr
    wrong = agenthost("--config", config, "db", "index", "--type", "btree", terminal=False)
    assert wrong.returncode == 2 and "btree" in wrong.stderr
