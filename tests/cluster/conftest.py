"""Fixtures of the cluster tests: real member processes (``agenthost run --role ...``) over the
session's pgserver PostgreSQL (one schema per test) and a nats-server from the wheel, on
loopback. The members load the ``cluster_probe`` model plugin (tests/cluster/probe)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from host.cluster.local import (
    free_port,
    member_env,
    spawn_member,
    start_nats,
    stop_process,
)
from host.pytest_plugin import fresh_schema, schema_uri

PROBE = Path(__file__).parent / "probe"
AGENT = "Probe"


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    port = free_port()
    process = start_nats(port)
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        stop_process(process)


class LocalCluster:
    """Member processes of one test's cluster, and SQL on its schema."""

    def __init__(self, url: str, nats: str | None, tmp: Path) -> None:
        self.url = url
        self.nats = nats
        self.tmp = tmp
        self.members: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {"CLUSTER_PROBE_DELAY": "0", "CLUSTER_PROBE_HANG": "3"}
        self.settings: dict[str, Any] = {
            "lease": 2,
            "poll_interval": 0.2,
            "max_tries": 3,
            "drain_timeout": 10,
        }
        self.api_url = ""

    def config(self) -> Path:
        chars = self.tmp / "characters"
        chars.mkdir(exist_ok=True)
        path = self.tmp / "agenthost.yaml"
        data = {
            "data_dir": str(self.tmp / "data"),
            "plugins": {"enabled": ["eliza", "postgres", "cluster_probe"]},
            "agents": {"characters_dir": str(chars), "characters": [{"name": AGENT}]},
            "metrics": {"enabled": False},
            "cluster": self.settings,
        }
        path.write_text(yaml.safe_dump(data))
        return path

    def spawn(self, name: str, role: str) -> subprocess.Popen[bytes]:
        port = free_port() if role != "worker" else None
        env = member_env(
            postgres_url=self.url,
            nats_url=self.nats,
            role=role,
            node_id=name,
            port=port,
            extra={
                **self.env,
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(PROBE), os.environ.get("PYTHONPATH")])
                ),
            },
        )
        if self.nats is None:
            env["AGENTHOST_CLUSTER__NATS_URL"] = "null"
        process = spawn_member(env, role=role, config=self.config(), log=self.tmp / f"{name}.log")
        self.members[name] = process
        if port is not None:
            self.api_url = f"http://127.0.0.1:{port}"
            self._wait_ready(process, name)
        return process

    def _wait_ready(self, process: subprocess.Popen[bytes], name: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"{name} exited: {self.log(name)}")
            try:
                if httpx.get(f"{self.api_url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{name} not ready: {self.log(name)}")

    async def wait_workers(self, *names: str, within: float = 60) -> None:
        """Until each named worker has its agent running (it logs it)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if all("agent Probe started" in self.log(n) for n in names):
                return
            for name in names:
                if self.members[name].poll() is not None:
                    raise AssertionError(f"{name} exited: {self.log(name)}")
            await asyncio.sleep(0.1)
        raise AssertionError(f"workers not ready: {[self.log(n)[-2000:] for n in names]}")

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        self.members[name].send_signal(sig)
        if sig == signal.SIGKILL:
            self.members[name].wait()

    async def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            cursor = await conn.execute(query, params)  # type: ignore[arg-type]
            return await cursor.fetchall() if cursor.description else []

    def stop_all(self) -> None:
        for process in self.members.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGCONT)
        for process in self.members.values():
            stop_process(process, timeout=20)


@pytest.fixture
async def cluster(pg_server_uri: str, nats_url: str, tmp_path: Path) -> AsyncIterator[LocalCluster]:
    async with fresh_schema(pg_server_uri, "cluster") as schema:
        local = LocalCluster(schema_uri(pg_server_uri, schema), nats_url, tmp_path)
        try:
            yield local
        finally:
            await asyncio.to_thread(local.stop_all)
