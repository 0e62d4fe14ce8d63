"""Hot reload benchmark: save-to-new-behaviour latency over N edits vs a full host restart.

A generated plugin distribution (package + ``.dist-info``) in a temp dir; a dev-mode host with
the default plugins loads it. Each edit rewrites the plugin's module with a new value, and the
latency is the time from the write until a state composed by the agent shows the new value
(polled every 2 ms). The debounce (quiet time waited after the last save) is part of that
latency and reported on its own. Baseline in the same run: stopping the host and starting a new
one (what a restart-based workflow costs) until the same check passes. Then, with two senders
processing messages all along, `edits` more edits: message latency from a save until its
reload is done vs between edits, and how many messages failed (must be 0).

    .venv/bin/python bench/reload.py [--edits 50] [--debounce 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from uuid import uuid4

from rich.console import Console
from rich.progress import track
from rich.table import Table

from contracts.config import (
    HostConfig,
    LoggingSettings,
    ReloadSettings,
)
from contracts.events import PLUGIN_RELOADED
from host.app import Host
from host.config import LoadedConfig
from host.logs import configure_logging
from host.testing import offline_config

PLUGIN = """
from typing import ClassVar
from contracts.agent import Provider, ProviderResult
from contracts.plugin import Manifest, Plugin

VALUE = "{value}"


class Bench(Plugin):
    manifest: ClassVar[Manifest] = Manifest(name="benchreload")

    async def value(self, message, state):
        return ProviderResult(text="value=" + VALUE)

    def providers(self):
        return [Provider("value", self.value)]
"""


RESTART = """
import asyncio, sys
from pathlib import Path
sys.argv = sys.argv  # the value to wait for is argv[1]
from contracts.config import LoggingSettings
from host.app import Host
from host.config import LoadedConfig
from host.logs import configure_logging
sys.path.insert(0, {bench!r})
import reload as bench

async def main():
    configure_logging(LoggingSettings(level="ERROR"))
    host = Host(LoadedConfig(bench.config(Path({root!r}), 0.0), None))
    await host.start()
    await bench.wait_for(host, sys.argv[1])
    await host.stop()

asyncio.run(main())
"""
"""A restart: a new process that starts the host and waits for the new value."""


BENCH_DIR = Path(__file__).resolve().parent


def make_site(root: Path) -> Path:
    site = root / "site"
    (site / "benchreload").mkdir(parents=True)
    (site / "benchreload" / "__init__.py").write_text(PLUGIN.format(value="0"))
    info = site / "benchreload-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: benchreload\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text("[agenthost.plugins]\nbenchreload = benchreload:Bench\n")
    (info / "RECORD").write_text("")
    return site


async def shows(host: Host, value: str) -> bool:
    assert host.agents is not None
    runtime = host.agents.get("Eliza")
    message = runtime.new_message("?", room_id=uuid4(), entity_id=uuid4())
    return f"value={value}" in (await runtime.compose_state(message)).text


async def wait_for(host: Host, value: str, limit: float = 30.0) -> None:
    deadline = time.perf_counter() + limit
    while not await shows(host, value):
        if time.perf_counter() > deadline:
            raise TimeoutError(f"value {value} never showed")
        await asyncio.sleep(0.002)


def config(root: Path, debounce: float) -> HostConfig:
    return offline_config(
        root / "data", "benchreload", dev=True, reload=ReloadSettings(debounce=debounce)
    )


async def under_load(
    host: Host, module: Path, edits: int, durations: asyncio.Queue[float]
) -> tuple[list[float], list[float], int]:
    """Message latencies from two senders, in alternating windows: quiet (no edit, as long as
    an edit takes) and from a save until its reload is done; and how many messages failed (the
    issue: none may fail because of a reload). Alternating keeps slow drift (a growing
    database, a busy machine) out of the comparison."""
    assert host.agents is not None
    runtime = host.agents.get("Eliza")
    quiet: list[float] = []
    busy: list[float] = []
    window = quiet
    failures = 0
    stop = asyncio.Event()

    async def sender() -> None:
        nonlocal failures
        while not stop.is_set():
            message = runtime.new_message("I feel fine", room_id=uuid4(), entity_id=uuid4())
            into, started = window, time.perf_counter()
            try:
                await runtime.process_message(message)
            except Exception:
                failures += 1
            into.append(time.perf_counter() - started)

    senders = [asyncio.create_task(sender()) for _ in range(2)]
    for index in range(edits):  # no polling here: it would load the loop the senders share
        window = quiet
        await asyncio.sleep(host.config.reload.debounce + 0.02)
        window = busy
        await asyncio.to_thread(module.write_text, PLUGIN.format(value=f"load{index}"))
        await durations.get()
    stop.set()
    await asyncio.gather(*senders)
    return quiet, busy, failures


async def run(edits: int, restarts: int, debounce: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        site = make_site(root)
        sys.path.insert(0, str(site))
        module = site / "benchreload" / "__init__.py"
        host = Host(LoadedConfig(config(root, debounce), None))
        await host.start()
        assert host.reloader is not None
        durations: asyncio.Queue[float] = asyncio.Queue()
        host.events.on(PLUGIN_RELOADED, lambda payload: durations.put_nowait(payload.duration))
        latencies: list[float] = []
        reload_times: list[float] = []
        for index in track(range(1, edits + 1), description="edits"):
            value = f"edit{index}"
            started = time.perf_counter()
            module.write_text(PLUGIN.format(value=value))
            await wait_for(host, value)
            latencies.append(time.perf_counter() - started)
            reload_times.append(await durations.get())  # emitted just after the swap
        quiet, busy, failures = await under_load(host, module, edits, durations)
        await host.stop()
        restart_times: list[float] = []
        script = RESTART.format(root=str(root), bench=str(BENCH_DIR))
        env = {**os.environ, "PYTHONPATH": str(site)}
        for index in track(range(restarts), description="restarts"):
            value = f"restart{index}"
            module.write_text(PLUGIN.format(value=value))
            started = time.perf_counter()
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", script, value, env=env, stderr=asyncio.subprocess.PIPE
            )
            _, stderr = await process.communicate()
            restart_times.append(time.perf_counter() - started)
            if process.returncode != 0:
                raise RuntimeError(f"restart failed: {stderr.decode()[-2000:]}")

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    restart = statistics.median(restart_times)
    table = Table(title=f"hot reload: {edits} edits (debounce {debounce * 1000:.0f} ms)")
    for column in ("measure", "p50 ms", "p95 ms", "x full restart (p50)"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    table.add_row(
        "full restart: new process, host start, new value shows (baseline)",
        f"{restart * 1000:.0f}",
        f"{pct(restart_times, 0.95) * 1000:.0f}",
        "1.00",
    )
    table.add_row(
        "save to new behaviour (includes debounce and file event)",
        f"{pct(latencies, 0.5) * 1000:.0f}",
        f"{pct(latencies, 0.95) * 1000:.0f}",
        f"{pct(latencies, 0.5) / restart:.2f}",
    )
    table.add_row("  of which debounce", f"{debounce * 1000:.0f}", f"{debounce * 1000:.0f}", "")
    table.add_row(
        "  of which the reload itself (purge, import, hold, drain, teardown, setup, register)",
        f"{pct(reload_times, 0.5) * 1000:.1f}",
        f"{pct(reload_times, 0.95) * 1000:.1f}",
        "",
    )
    table.add_row(
        "message latency, two senders, between edits (baseline for the next row)",
        f"{pct(quiet, 0.5) * 1000:.1f}",
        f"{pct(quiet, 0.95) * 1000:.1f}",
        "",
    )
    table.add_row(
        f"message latency, two senders, from save to reloaded ({len(busy)} messages, "
        f"{failures} failed)",
        f"{pct(busy, 0.5) * 1000:.1f}",
        f"{pct(busy, 0.95) * 1000:.1f}",
        f"p95 {pct(busy, 0.95) / pct(quiet, 0.95):.2f}x between edits",
    )
    verdict = "met" if pct(latencies, 0.5) < 0.3 else "NOT met"
    console = Console(width=150)
    console.print(table)
    console.print(f"target p50 < 300 ms including debounce: {verdict}")
    console.print(f"messages failed during reloads: {failures} (must be 0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=50)
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--debounce", type=float, default=0.1)
    args = parser.parse_args()
    configure_logging(LoggingSettings(level="WARNING"))
    asyncio.run(run(args.edits, args.restarts, args.debounce))


if __name__ == "__main__":
    main()
