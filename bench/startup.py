"""Start-up benchmark: host start to "plugins loaded" with 0, 10 and 100 installed plugins.

Generated plugin distributions (a package plus a ``.dist-info`` with its entry point, the layout
pip installs) go into a temporary site directory put on PYTHONPATH. Each row is a fresh process:
the baseline is a bare ``python -c "import importlib.metadata"``; the measured runs import the
host, discover, load (construct + set up + register) every plugin, and stop. Figures are the
best of the runs, and per-plugin costs are the growth over the 0-plugin run.

    .venv/bin/python bench/startup.py [--quick] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table

PLUGIN = """
from typing import ClassVar
from contracts.plugin import Manifest, Plugin
from contracts.logging import Logger


class BenchPlugin(Plugin):
    manifest: ClassVar[Manifest] = Manifest(name="{name}", description="generated")

    def __init__(self, log: Logger) -> None:
        self.log = log

    async def setup(self) -> None:
        self.log.debug("ready")
"""

HOST = """
import asyncio, sys
from host.app import Host
from host.config import load_config
from host.logs import configure_logging
from contracts.config import LoggingSettings

async def main():
    configure_logging(LoggingSettings(level="ERROR"))
    host = Host(load_config(None, environ={{"AGENTHOST_DATA_DIR": {data!r}}}))
    await host.start(agents=False)
    loaded = sum(1 for s in host.statuses if s.state == "loaded")
    await host.stop()
    print(loaded)

asyncio.run(main())
"""


def make_site(root: Path, count: int) -> Path:
    site = root / f"site-{count}"
    site.mkdir()
    for index in range(count):
        name = f"bench-plugin-{index:03d}"
        package = f"bench_plugin_{index:03d}"
        (site / package).mkdir()
        (site / package / "__init__.py").write_text(PLUGIN.format(name=name))
        info = site / f"{package}-1.0.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0.0\n")
        (info / "entry_points.txt").write_text(
            f"[agenthost.plugins]\n{name} = {package}:BenchPlugin\n"
        )
        (info / "RECORD").write_text("")
    return site


def timed(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0 and 100 plugins, 2 runs each")
    parser.add_argument("--runs", type=int, default=None)
    args = parser.parse_args()
    counts = [0, 100] if args.quick else [0, 10, 100]
    runs = args.runs or (2 if args.quick else 5)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sites = {count: make_site(root, count) for count in counts}
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTHOST_")}
        bare: list[float] = []
        host: dict[int, list[float]] = {count: [] for count in counts}
        loaded: dict[int, str] = {}
        jobs = [(None, i) for i in range(runs)] + [(c, i) for c in counts for i in range(runs)]
        for count, _ in track(jobs, description="starting processes"):
            if count is None:
                seconds, _out = timed(
                    [sys.executable, "-c", "import importlib.metadata"], base_env, root
                )
                bare.append(seconds)
                continue
            env = {**base_env, "PYTHONPATH": str(sites[count])}
            script = HOST.format(data=str(root / "data"))
            seconds, out = timed([sys.executable, "-c", script], env, root)
            host[count].append(seconds)
            loaded[count] = out
    floor = min(bare)
    zero = min(host[counts[0]])
    table = Table(title=f"host start to plugins loaded, best of {runs} fresh processes")
    for column in ("run", "plugins loaded", "seconds", "x bare python", "per extra plugin"):
        table.add_column(column, justify="left" if column == "run" else "right")
    table.add_row('python -c "import importlib.metadata" (baseline)', "", f"{floor:.3f}", "1.0", "")
    for count in counts:
        best = min(host[count])
        per = f"{(best - zero) / count * 1000:.2f} ms" if count else ""
        table.add_row(
            f"host with {count} generated plugins (+ builtins)",
            loaded[count],
            f"{best:.3f}",
            f"{best / floor:.1f}",
            per,
        )
    console = Console(width=150)
    console.print(table)
    console.print(
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
