"""``agenthost db start | status | stop``: a real PostgreSQL with pgvector from pgserver in a data
dir, its URL printed for the config; the missing-pgvector error says how to get it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from builtin_plugins.postgres import PostgresAdapter
from builtin_plugins.postgres.adapter import VECTOR_HINT, missing_vector_hint
from host.localdb import EXTRA_HINT, LocalDbError, status

AGENTHOST = Path(sys.executable).with_name("agenthost")


def db(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AGENTHOST), "db", *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip


@pytest.fixture
def data_dir() -> Iterator[Path]:
    pytest.importorskip("pgserver")
    # not under pytest's basetemp (see host/pytest_plugin.py: pgserver run as root opens the
    # directory's parents to its own user, which other pytest sessions close again)
    directory = Path(tempfile.mkdtemp(prefix="agenthost-db-"))
    try:
        yield directory
    finally:
        db("stop", data_dir=directory)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.postgres
def test_start_status_stop_and_the_url_serves_the_memory_store(data_dir: Path) -> None:
    assert db("status", data_dir=data_dir).returncode == 3  # nothing started yet
    started = db("start", "--json", data_dir=data_dir)
    assert started.returncode == 0, started.stderr
    state = json.loads(started.stdout)
    assert state["running"] is True and state["directory"] == str(data_dir / "postgres")
    url = state["url"]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT extname FROM pg_extension WHERE extname = 'vector'").fetchone()

    async def store() -> int:
        adapter = await PostgresAdapter.open(url)  # migrates: the store works on it
        try:
            return await adapter.count_memories()
        finally:
            await adapter.close()

    assert asyncio.run(store()) == 0
    text = db("status", data_dir=data_dir)
    assert text.returncode == 0
    assert "AGENTHOST_SERVICES__DATABASE=postgres" in text.stdout
    assert "AGENTHOST_PLUGINS__POSTGRES__URL=" in text.stdout and "running" in text.stdout
    again = db("start", "--json", data_dir=data_dir)  # already running: the same server
    assert json.loads(again.stdout)["pid"] == state["pid"]
    stopped = db("stop", data_dir=data_dir)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert db("status", data_dir=data_dir).returncode == 3
    assert db("stop", data_dir=data_dir).stdout.strip() == "not running"


def test_without_the_extra_the_error_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "pgserver", None)  # import fails as when not installed
    (tmp_path / "postgres").mkdir()
    with pytest.raises(LocalDbError, match=r"agenthost\[pgserver\]") as caught:
        status(tmp_path)
    assert EXTRA_HINT in str(caught.value)


@pytest.mark.postgres
def test_the_missing_pgvector_error_says_how_to_get_it(pg_server_uri: str) -> None:
    """The server's own wording for an extension it lacks (one that no server has, named
    as pgvector's would be) gets the way forward."""
    with (
        psycopg.connect(pg_server_uri, autocommit=True) as conn,
        pytest.raises(psycopg.Error) as caught,
    ):
        conn.execute('CREATE EXTENSION IF NOT EXISTS "vector_not_here"')
    wording = str(caught.value).replace('"vector_not_here"', '"vector"')
    assert missing_vector_hint(type(caught.value)(wording)) == VECTOR_HINT
    assert "agenthost db start" in VECTOR_HINT and "pgvector" in VECTOR_HINT
    assert missing_vector_hint(caught.value) is None  # another extension: no pgvector advice
