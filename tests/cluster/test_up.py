"""``agenthost cluster up``: one command starts PostgreSQL, NATS, a worker and an API process on
loopback, answers, and SIGTERM stops them all. Slow (a PostgreSQL of its own): ``-m slow``."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from host.cli import app
from host.cluster.local import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_cluster_up_answers_and_stops_everything_on_sigterm() -> None:
    pytest.importorskip("pgserver")
    data = Path(tempfile.mkdtemp(prefix="agenthost-up-"))
    port, nats = free_port(), free_port()
    command = [sys.executable, "-c", "from host.cli import main; main()", "cluster", "up"]
    command += ["--workers", "1", "--port", str(port), "--nats-port", str(nats)]
    up = subprocess.Popen([*command, "--data", str(data)], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        reply = httpx.post(
            f"http://127.0.0.1:{port}/agents/Eliza/messages",
            json={"text": "I feel tired"},
            headers={"Idempotency-Key": "one"},
            timeout=60,
        )
        assert reply.status_code == 200 and reply.json()["responded"]
        status = CliRunner().invoke(
            app, ["cluster", "status", "--json", "--url", f"http://127.0.0.1:{port}"]
        )
        assert status.exit_code == 0, status.output
        assert '"done": 1' in status.output and '"worker-1"' in status.output
        up.send_signal(signal.SIGTERM)
        assert up.wait(60) == 0
        assert "cluster stopped" in (up.stdout.read() if up.stdout else "")
        for closed in (port, nats):  # the API process and nats-server are gone
            with pytest.raises(OSError), socket.create_connection(("127.0.0.1", closed), 1):
                pass
    finally:
        if up.poll() is None:
            up.kill()
        shutil.rmtree(data, ignore_errors=True)
