"""`agenthost run` in a real process: serves the default agent over HTTP, keeps serving with a
broken plugin installed, tears plugins down in reverse load order on SIGTERM and Ctrl-C, and
exits 1 (having torn down what started) when its port is taken."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
AGENTHOST = Path(sys.executable).with_name("agenthost")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    port: int, env: dict[str, str], *options: str, nohup: bool = False
) -> subprocess.Popen[str]:
    """`agenthost [options] run --port <port>` (`nohup`: started with SIGHUP ignored, as
    ``nohup`` starts it; else with SIGHUP's default action, as from a terminal, even when
    these tests run under ``nohup``), returned once /health answers."""
    process = subprocess.Popen(
        [str(AGENTHOST), *options, "run", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(
            signal.SIGHUP, signal.SIG_IGN if nohup else signal.SIG_DFL
        ),
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            pytest.fail(f"host exited with {process.returncode}:\n{process.communicate()[1]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"host did not come up:\n{process.communicate()[1]}")
        time.sleep(0.2)


def load_and_unload_order(log: str) -> tuple[list[str], list[str]]:
    """Plugin names in the order the debug log shows them loaded, and unloaded."""
    loaded = re.findall(r"\| plugin (\S+) \S+ loaded in ", log)
    unloaded = re.findall(r"\| plugin (\S+) unloaded$", log, re.MULTILINE)
    return loaded, unloaded


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["sigterm", "sighup"])
def test_run_serves_then_stops_on_sigterm(tmp_path: Path, signum: int) -> None:
    """A service manager's stop and a terminal closing stop the host cleanly: every plugin torn
    down, and the audit trail has the turn and the stop (nothing of the last window lost)."""
    port = free_port()
    process = start(port, {"AGENTHOST_DATA_DIR": str(tmp_path / "data")}, "--log-level", "debug")
    try:
        base = f"http://127.0.0.1:{port}"
        reply = httpx.post(
            f"{base}/agents/eliza/messages", json={"text": "Men are all alike."}, timeout=30
        )
        assert reply.status_code == 200 and reply.json()["text"] == "In what way?"
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        assert "gen_ai_client_operation_duration_seconds_count" in metrics
    finally:
        process.send_signal(signum)
        _out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "agent Eliza stopped" in err
    loaded, unloaded = load_and_unload_order(err)
    assert {"sqlite", "eliza", "audit"} <= set(loaded)
    assert unloaded == loaded[::-1]
    assert (tmp_path / "data" / "agenthost.sqlite3").exists()
    trail = sqlite3.connect(tmp_path / "data" / "events.sqlite3")
    kinds = {kind for (kind,) in trail.execute("SELECT event_type FROM event_log")}
    trail.close()
    assert {"message:received", "message:sent", "agent:stopped"} <= kinds


def test_ctrl_c_with_a_broken_plugin_installed(plugin_path: Path, tmp_path: Path) -> None:
    """The broken plugin is reported with its reason, the host serves regardless (the external
    plugin too), and Ctrl-C tears plugins down in reverse (weather before the sqlite it needs)."""
    port = free_port()
    env = {
        "PYTHONPATH": str(plugin_path),
        "AGENTHOST_DATA_DIR": str(tmp_path),
        "AGENTHOST_PLUGINS__WEATHER__CITY": "Lyon",
    }
    process = start(port, env, "--log-level", "debug")
    try:
        base = f"http://127.0.0.1:{port}"
        reply = httpx.post(f"{base}/agents/eliza/messages", json={"text": "hello"}, timeout=30)
        assert reply.status_code == 200
        plugins = {p["name"]: p for p in httpx.get(f"{base}/plugins", timeout=10).json()}
        broken = httpx.get(f"{base}/plugins/broken", timeout=10).json()
        missing = httpx.get(f"{base}/plugins/nope", timeout=10)
    finally:
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert (
        "plugin broken (distribution agenthost-broken) failed: cannot import"
        " agenthost_broken:BrokenPlugin: ModuleNotFoundError: No module named"
        " 'agenthost_missing_dependency'"
    ) in err
    assert "| weather | weather plugin ready for Lyon" in err
    # the running host reports the same over HTTP
    assert broken == plugins["broken"]
    assert broken["status"] == "failed" and broken["stage"] == "discover"
    assert broken["distribution"] == "agenthost-broken"
    assert "No module named 'agenthost_missing_dependency'" in broken["error"]
    assert plugins["weather"]["status"] == "loaded" and plugins["weather"]["error"] is None
    assert plugins["weather"]["distribution"] == "agenthost-weather"
    assert {"sqlite", "eliza", "audit"} <= {
        n for n, p in plugins.items() if p["status"] == "loaded"
    }
    assert missing.status_code == 404 and "'nope'" in missing.json()["detail"]
    assert "broken" in missing.json()["detail"]
    loaded, unloaded = load_and_unload_order(err)
    assert loaded.index("sqlite") < loaded.index("weather") and "broken" not in loaded
    assert unloaded == loaded[::-1]


def test_a_port_in_use_exits_1_after_tearing_down(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [str(AGENTHOST), "--log-level", "debug", "run", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, "AGENTHOST_DATA_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1, done.stderr
    assert f"error: cannot serve HTTP on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "Traceback" not in done.stderr
    loaded, unloaded = load_and_unload_order(done.stderr)
    assert loaded and unloaded == loaded[::-1]


HANGING_PLUGIN = """
import asyncio
from typing import ClassVar

from contracts.logging import Logger
from contracts.plugin import Manifest, Plugin


class Hang(Plugin):
    manifest: ClassVar[Manifest] = Manifest(name="hang")

    def __init__(self, log: Logger) -> None:
        self.log = log

    async def teardown(self) -> None:
        self.log.info("teardown hangs")
        await asyncio.sleep(3600)
"""


def install_hanging_plugin(site: Path) -> None:
    """A real distribution (dist-info with its entry point) whose teardown never returns."""
    (site / "hangplug").mkdir(parents=True)
    (site / "hangplug" / "__init__.py").write_text(HANGING_PLUGIN)
    info = site / "hangplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hangplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[agenthost.plugins]\nhang = hangplug:Hang\n")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_second_signal_aborts_a_hanging_teardown(tmp_path: Path, signum: int) -> None:
    install_hanging_plugin(tmp_path / "site")
    port = free_port()
    env = {"PYTHONPATH": str(tmp_path / "site"), "AGENTHOST_DATA_DIR": str(tmp_path / "data")}
    process = start(port, env)
    assert process.stderr is not None
    lines: queue.Queue[str] = queue.Queue()
    stderr = process.stderr

    def read() -> None:
        for line in stderr:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    process.send_signal(signum)
    seen = []
    deadline = time.monotonic() + 60
    while not any("teardown hangs" in line for line in seen):
        assert time.monotonic() < deadline, "".join(seen)
        seen.append(lines.get(timeout=60))
    process.send_signal(signum)
    assert process.wait(timeout=30) == 1
    time.sleep(0.2)
    while not lines.empty():
        seen.append(lines.get())
    log = "".join(seen)
    assert "stopping (a second Ctrl-C aborts the teardown)" in log
    assert "error: teardown aborted by a second signal" in log


def test_run_under_nohup_outlives_its_terminal(tmp_path: Path) -> None:
    """Started with SIGHUP ignored (``nohup agenthost run &``), the host keeps serving when the
    terminal closes; SIGTERM still stops it cleanly."""
    port = free_port()
    process = start(port, {"AGENTHOST_DATA_DIR": str(tmp_path / "data")}, nohup=True)
    try:
        process.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert process.poll() is None
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "agent Eliza stopped" in err
