"""`agenthost run` in a real process: serves the default agent over HTTP, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_run_serves_then_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    script = Path(sys.executable).with_name("agenthost")
    env = {**os.environ, "AGENTHOST_DATA_DIR": str(tmp_path / "data")}
    process = subprocess.Popen(
        [str(script), "run", "--port", str(port)],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "host did not come up"
            time.sleep(0.2)
        reply = httpx.post(
            f"{base}/agents/eliza/messages", json={"text": "Men are all alike."}, timeout=30
        )
        assert reply.status_code == 200 and reply.json()["text"] == "In what way?"
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        assert "gen_ai_client_operation_duration_count" in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "agent Eliza stopped" in err
    assert (tmp_path / "data" / "agenthost.sqlite3").exists()
