"""Start-up benchmark: host start to "plugins loaded" with 0, 10 and 100 installed plugins, and
to ready (``GET /ready`` answers 200) with the builtin plugins and the HTTP API on.

Generated plugin distributions (a package plus a ``.dist-info`` with its entry point, the layout
pip installs) go into a temporary site directory put on PYTHONPATH. Each row is a fresh process:
the baseline is a bare ``python -c "import importlib.metadata"``; the measured runs import the
host, discover, load (construct + set up + register) every plugin, and stop. The ready row runs
the default configuration (the repository's ``config/``, SQLite, ELIZA, the audit trail) with
agents and HTTP on a free port, and stops once its own ``GET /ready`` answers 200; another run of
the same then times its first requests (a message, a second one, a console page: what start-up
does not do is paid there). Figures are the best of the runs, and per-plugin costs are the growth
over the 0-plugin run.

The children run with bytecode caching on (``PYTHONDONTWRITEBYTECODE`` removed from their
environment) after one warm-up run that is not counted: an installed host has its modules
compiled, and compiling ~120 modules from source on every start (~0.2 s) is not start-up work.
The floor row imports only the third-party libraries a start to ready needs (FastAPI and its
pydantic models, uvicorn, pydantic-settings, numpy, PyYAML, dependency-injector, pluggy, loguru,
sse-starlette); the served floor also declares one FastAPI route and serves it with uvicorn until
``GET /ready`` answers, so the host's own share is the ready row less the served floor.

Where the host's share goes: the ready run times its own phases (process CPU, all threads:
imports, config and assembly, discovery, plugin loading, the embedding check, agents, HTTP,
the first ``GET /ready``), and two more runs of the ready host and of the served floor under
``python -X importtime`` give each package group's import time (own time of its modules, the
least of the runs), side by side; the floor line says what stops the 6x target.

    .venv/bin/python bench/startup.py [--quick] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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

READY = """
import time
PHASES = {{"interpreter start (to the script's first line)": time.process_time()}}
import asyncio, json
import host.app as host_app
from host.app import Host
from host.config import load_config
from host.logs import configure_logging
from contracts.config import LoggingSettings
PHASES["import the host (host.app, host.config, host.logs)"] = (
    time.process_time() - sum(PHASES.values())
)

def timed(owner, name, label):
    call = getattr(owner, name)
    async def run(*args, **kwargs):
        started = time.process_time()
        try:
            return await call(*args, **kwargs)
        finally:
            PHASES[label] = PHASES.get(label, 0.0) + time.process_time() - started
    setattr(owner, name, run)

def discover_timed():
    started = time.process_time()
    try:
        return discover()
    finally:
        PHASES["start: discover plugins (entry points)"] = time.process_time() - started
discover, host_app.discover = host_app.discover, discover_timed

HEAD = "{{method}} {{path}} HTTP/1.1\\r\\nHost: 127.0.0.1:{{port}}\\r\\nConnection: close\\r\\n"
JSON = "Content-Type: application/json\\r\\nContent-Length: {{length}}\\r\\n"

async def ask(port, method, path, body=b""):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = HEAD + (JSON if body else "") + "\\r\\n"
    writer.write(head.format(method=method, path=path, port=port, length=len(body)).encode())
    writer.write(body)
    status = (await reader.readline()).split()[1].decode()
    await reader.read()
    writer.close()
    return status

async def main():
    started = time.process_time()
    configure_logging(LoggingSettings(level="ERROR"))
    env = {{"AGENTHOST_DATA_DIR": {data!r}, "AGENTHOST_HTTP__PORT": "0"}}
    host = Host(load_config(None, environ=env))
    PHASES["config and assembly (load_config, Host())"] = time.process_time() - started
    timed(host.loader, "load_all", "start: load plugins (construct, set up, register)")
    timed(host, "_start_agents", "start: agents (stores opened, runtimes, knowledge)")
    timed(host_app, "check_embeddings", "start: embedding check (the model loads, embeds a probe)")
    timed(host, "start_http", "start: HTTP (app, routes, console mount, uvicorn)")
    started = time.process_time()
    await host.start(http=True)
    whole = time.process_time() - started
    PHASES["start: agents (stores opened, runtimes, knowledge)"] -= PHASES.get(
        "start: embedding check (the model loads, embeds a probe)", 0.0
    )
    PHASES["start: the rest (metrics, hooks, report, checks, GC freeze)"] = whole - sum(
        v for k, v in PHASES.items() if k.startswith("start: ")
    )
    port = host.http.port
    started = time.process_time()
    status = await ask(port, "GET", "/ready")
    PHASES["GET /ready (the first request)"] = time.process_time() - started
    print(status, flush=True)  # the parent's clock stops here, not after the stop
    started = time.process_time()
    if not {firsts}:
        await host.stop()
        PHASES["stop (after ready: in the CPU column)"] = time.process_time() - started
        print(json.dumps(PHASES), flush=True)
        return
    body = json.dumps({{"text": "Hello, I feel sad today", "user": "bench"}}).encode()
    firsts = {{}}
    for name, method, path in (
        ("first message", "POST", "/agents/Eliza/messages"),
        ("second message", "POST", "/agents/Eliza/messages"),
        ("first console page", "GET", "/console/agents"),
    ):
        cpu, wall = time.process_time(), time.perf_counter()
        answer = await ask(port, method, path, body if method == "POST" else b"")
        firsts[name] = (answer, time.perf_counter() - wall, time.process_time() - cpu)
    print(json.dumps(firsts), flush=True)
    await host.stop()

asyncio.run(main())
"""
FLOOR = (
    "import fastapi, fastapi.responses, uvicorn, pydantic_settings, numpy, yaml, pluggy, loguru,"
    " sse_starlette, dependency_injector.containers, dependency_injector.providers, sqlite3"
)
"""What a start to ready cannot do without: the libraries it serves and configures with."""
SERVED_FLOOR = (
    FLOOR
    + """
import asyncio

async def main():
    app = fastapi.FastAPI()
    app.get("/ready")(lambda: {"status": "ready"})
    server = uvicorn.Server(uvicorn.Config(app, port=0, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.001)
    port = server.servers[0].sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /ready HTTP/1.1\\r\\nHost: bench\\r\\nConnection: close\\r\\n\\r\\n")
    status = (await reader.readline()).split()[1].decode()
    writer.close()
    print(status, flush=True)
    server.should_exit = True
    await task

asyncio.run(main())
"""
)
"""The floor of a ready run: those libraries, a FastAPI app with one route (FastAPI imports
pydantic.v1 at the first route it declares, to refuse v1 models) served by uvicorn, answering
``GET /ready``: what any Python service on this stack pays before its own code."""
REPO = Path(__file__).resolve().parent.parent


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


def children_cpu() -> float:
    """CPU seconds (user + system) of the ended child processes: steadier than the wall clock
    on a shared machine, where waiting for a core counts in the wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """Wall and CPU seconds of a process run to its end, and its output."""
    started, cpu = time.perf_counter(), children_cpu()
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    return seconds, children_cpu() - cpu, done.stdout.strip()


def until_line(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """Wall seconds from the start to the process's first stdout line; CPU seconds to its exit
    (its stop included); its output (the first line, then the rest)."""
    started, cpu = time.perf_counter(), children_cpu()
    with subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        seconds = time.perf_counter() - started
        rest = proc.stdout.read().strip()
        if proc.wait() != 0:
            raise SystemExit(f"the ready run failed (exit {proc.returncode})")
    return seconds, children_cpu() - cpu, f"{line}\n{rest}".strip()


GROUPS: dict[str, frozenset[str]] = {
    "fastapi, starlette, sse_starlette": frozenset({"fastapi", "starlette", "sse_starlette"}),
    "pydantic, pydantic_core, pydantic_settings": frozenset(
        {"pydantic", "pydantic_core", "pydantic_settings", "annotated_types", "typing_extensions"}
    ),
    "uvicorn, h11, httptools, websockets": frozenset(
        {"uvicorn", "h11", "httptools", "websockets", "uvloop", "watchfiles", "anyio", "sniffio"}
    ),
    "numpy": frozenset({"numpy"}),
    "faiss": frozenset({"faiss"}),
    "dependency_injector, pluggy, loguru, yaml": frozenset(
        {"dependency_injector", "pluggy", "loguru", "yaml", "_yaml"}
    ),
    "host": frozenset({"host"}),
    "builtin_plugins": frozenset({"builtin_plugins"}),
    "contracts": frozenset({"contracts"}),
}
"""Top-level packages summed together in the import breakdown; the rest is split into the
standard library and other third-party packages (named in the row)."""


def import_times(args: list[str], env: dict[str, str], cwd: Path) -> dict[str, float]:
    """Seconds of each top-level package's own import time (``python -X importtime``: each
    module's own execution, its imports excluded; the measuring inflates it) in one run."""
    done = subprocess.run(
        [args[0], "-X", "importtime", *args[1:]],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        own, _, name = (part.strip() for part in line[len("import time:") :].split("|"))
        top = name.split(".")[0]
        found[top] = found.get(top, 0.0) + int(own) / 1e6
    return found


def group_of(top: str) -> str:
    for group, members in GROUPS.items():
        if top in members:
            return group
    return "standard library" if top in sys.stdlib_module_names else "other third-party"


def imports_table(runs: dict[str, list[dict[str, float]]]) -> tuple[Table, list[tuple[str, float]]]:
    """The ready host's imports against the served floor's, by package group (per package the
    least of the runs); also the groups' growth over the floor, largest first."""
    least = {
        kind: {top: min(r.get(top, 0.0) for r in found) for top in set().union(*found)}
        for kind, found in runs.items()
    }
    grouped: dict[str, dict[str, float]] = {"served": {}, "ready": {}}
    others: dict[str, float] = {}
    for kind, tops in least.items():
        for top, seconds in tops.items():
            group = group_of(top)
            grouped[kind][group] = grouped[kind].get(group, 0.0) + seconds
            if kind == "ready" and group == "other third-party":
                others[top] = seconds
    totals = {kind: sum(found.values()) for kind, found in grouped.items()}
    growth = totals["ready"] - totals["served"]
    title = "imports by package (-X importtime, own time, least of the runs): ready vs served floor"
    table = Table(title=title)
    columns = ("packages", "served floor ms", "share", "ready ms", "share", "ready - floor ms")
    for column in (*columns, "share of the growth"):
        table.add_column(column, justify="left" if column == "packages" else "right")
    names = sorted(
        set(grouped["served"]) | set(grouped["ready"]),
        key=lambda g: -(grouped["ready"].get(g, 0.0) - grouped["served"].get(g, 0.0)),
    )
    changes = []
    for group in names:
        served, ready = grouped["served"].get(group, 0.0), grouped["ready"].get(group, 0.0)
        label = group
        if group == "other third-party" and others:
            top = sorted(others, key=lambda t: -others[t])[:4]
            label = f"other third-party ({', '.join(top)}, ...)"
        changes.append((group, ready - served))
        table.add_row(
            label,
            f"{served * 1e3:,.1f}",
            f"{served / totals['served']:.0%}",
            f"{ready * 1e3:,.1f}",
            f"{ready / totals['ready']:.0%}",
            f"{(ready - served) * 1e3:+,.1f}",
            f"{(ready - served) / growth:.0%}" if growth > 0 else "",
        )
    table.add_row(
        "all imports",
        f"{totals['served'] * 1e3:,.1f}",
        "100%",
        f"{totals['ready'] * 1e3:,.1f}",
        "100%",
        f"{growth * 1e3:+,.1f}",
        "100%",
    )
    return table, changes


def phases_table(results: list[tuple[float, float, str]]) -> tuple[Table, dict[str, float]]:
    """The ready run's process CPU by phase (timed inside it), from its quickest run."""
    runs = [json.loads(output.splitlines()[1]) for _, _, output in results]
    quickest = min(runs, key=lambda p: sum(v for k, v in p.items() if not k.startswith("stop")))
    to_ready = sum(v for k, v in quickest.items() if not k.startswith("stop"))
    title = "ready run: process CPU by phase, all threads (its quickest run; imports count"
    table = Table(title=f"{title} in the phase that does them)")
    for column in ("phase", "CPU ms", "share of start to ready"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    for phase, seconds in quickest.items():
        share = "" if phase.startswith("stop") else f"{seconds / to_ready:.0%}"
        table.add_row(phase, f"{seconds * 1e3:,.1f}", share)
    table.add_row("start to ready", f"{to_ready * 1e3:,.1f}", "100%")
    return table, quickest


def after_ready(results: list[tuple[float, float, str]], bare_cpu: float) -> Table:
    """What a ready host pays at its first requests (so that start-up does not just move its
    cost there): the first message (ELIZA's local embedding model loads then), a second one,
    and the first console page (the console installs itself then); best of the runs."""
    firsts: dict[str, list[tuple[str, float, float]]] = {}
    for _, _, output in results:
        for name, found in json.loads(output.splitlines()[1]).items():  # after the status
            firsts.setdefault(name, []).append(tuple(found))
    table = Table(title="after ready: the first requests, best of the runs (process CPU)")
    for column in ("request", "status", "ms", "CPU ms", "CPU x bare"):
        table.add_column(column, justify="left" if column == "request" else "right")
    for name, found in firsts.items():
        wall = min(f[1] for f in found)
        cpu = min(f[2] for f in found)
        status = found[-1][0]
        table.add_row(
            name, status, f"{wall * 1000:.1f}", f"{cpu * 1000:.1f}", f"{cpu / bare_cpu:.1f}"
        )
    return table


IMPORT_RUNS = 3
"""Runs of the ready host and of the served floor under ``-X importtime`` (least per package)."""


def floor_line(
    wall: dict[int | str, float],
    cpu: dict[int | str, float],
    phases: dict[str, float],
    changes: list[tuple[str, float]],
) -> str:
    """Target 4's verdict, and what stops it: the served floor, then the host's share."""
    ready, served = wall["ready"] / wall["bare"], wall["served"] / wall["bare"]
    ready_cpu, served_cpu = cpu["ready"] / cpu["bare"], cpu["served"] / cpu["bare"]
    verdict = "met" if ready_cpu <= 6 else "NOT met"
    head = (
        f"target 4: start-up to ready <= 6x bare: CPU {ready_cpu:.1f}x (wall {ready:.1f}x),"
        f" {verdict}."
    )
    if served_cpu > 6:
        floor = (
            f" The floor stops it: the served floor alone (the libraries, a one-route FastAPI app"
            f" served by uvicorn) is CPU {served_cpu:.1f}x bare (wall {served:.1f}x), above 6x"
            f" before the host runs a line of its own."
        )
    else:
        floor = f" The served floor is CPU {served_cpu:.1f}x (wall {served:.1f}x): not a floor."
    steps = sorted(
        ((k, v) for k, v in phases.items() if not k.startswith(("stop", "interpreter"))),
        key=lambda kv: -kv[1],
    )[:3]
    grown = [(g, d) for g, d in changes if d > 0][:3]
    return (
        head
        + floor
        + f" The host's own share adds CPU {(cpu['ready'] - cpu['served']) / cpu['bare']:.1f}x:"
        + " largest phases "
        + ", ".join(f"{name.split(' (')[0]} {sec * 1e3:.0f} ms" for name, sec in steps)
        + "; imports grown over the floor "
        + ", ".join(f"{group} {delta * 1e3:+.0f} ms" for group, delta in grown)
        + " (importtime ms)."
    )


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
        skip = ("AGENTHOST_", "PYTHONDONTWRITEBYTECODE")
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
        bare = [sys.executable, "-c", "import importlib.metadata"]
        floor = [sys.executable, "-c", FLOOR]
        served = [sys.executable, "-c", SERVED_FLOOR]
        ready = [sys.executable, "-c", READY.format(data=str(root / "ready-data"), firsts=False)]
        firsts = [sys.executable, "-c", READY.format(data=str(root / "firsts"), firsts=True)]
        host = HOST.format(data=str(root / "data"))
        for warm_up in (floor, served, ready, firsts):  # writes the bytecode caches
            subprocess.run(warm_up, env=base_env, cwd=REPO, capture_output=True, check=True)
        rows: dict[int | str, list[tuple[float, float, str]]] = {}
        kinds: list[int | str] = ["bare", "floor", "served", *counts, "ready", "firsts"]
        jobs = [kind for _ in range(runs) for kind in kinds]  # interleaved: load drifts evenly
        for kind in track(jobs, description="starting processes"):
            if kind == "bare":
                result = timed(bare, base_env, root)
            elif kind == "floor":
                result = timed(floor, base_env, root)
            elif kind == "served":
                result = until_line(served, base_env, root)
            elif kind == "ready":  # the repository's config/ (characters): the default set-up
                result = until_line(ready, base_env, REPO)
            elif kind == "firsts":  # the same, then its first requests (not in the ready row)
                result = until_line(firsts, base_env, REPO)
            else:
                env = {**base_env, "PYTHONPATH": str(sites[int(kind)])}
                result = timed([sys.executable, "-c", host], env, root)
            rows.setdefault(kind, []).append(result)
        imports: dict[str, list[dict[str, float]]] = {"served": [], "ready": []}
        imported = [sys.executable, "-c", READY.format(data=str(root / "imports"), firsts=False)]
        for _ in range(IMPORT_RUNS):  # -X importtime slows what it measures: runs of their own
            imports["served"].append(import_times(served, base_env, root))
            imports["ready"].append(import_times(imported, base_env, REPO))
    wall = {kind: min(r[0] for r in results) for kind, results in rows.items()}
    cpu = {kind: min(r[1] for r in results) for kind, results in rows.items()}
    title = f"host start to plugins loaded / to ready, best of {runs} fresh processes"
    table = Table(title=title)
    columns = ("run", "plugins loaded", "seconds", "x bare python", "CPU s", "x bare CPU")
    for column in (*columns, "per extra plugin"):
        table.add_column(column, justify="left" if column == "run" else "right")

    def row(kind: int | str, label: str, loaded: str = "", per: str = "") -> None:
        ratios = (wall[kind] / wall["bare"], cpu[kind] / cpu["bare"])
        table.add_row(
            label,
            loaded,
            f"{wall[kind]:.3f}",
            f"{ratios[0]:.1f}",
            f"{cpu[kind]:.3f}",
            f"{ratios[1]:.1f}",
            per,
        )

    row("bare", 'python -c "import importlib.metadata" (baseline)')
    row("floor", "floor: import the libraries start-up needs (FLOOR), nothing else")
    served_status = rows["served"][-1][2]
    row("served", f"floor served: those + a one-route FastAPI app, GET /ready {served_status}")
    for count in counts:
        per = f"{(wall[count] - wall[counts[0]]) / count * 1000:.2f} ms" if count else ""
        label = f"host with {count} generated plugins (+ builtins)"
        row(count, label, rows[count][-1][2], per)
    ready_status = rows["ready"][-1][2].splitlines()[0]
    row("ready", f"ready with builtin plugins and HTTP on (GET /ready {ready_status})")
    table.add_row(
        "  ready over the served floor (the host's own share)",
        "",
        f"{wall['ready'] - wall['served']:.3f}",
        f"{(wall['ready'] - wall['served']) / wall['bare']:.1f}",
        f"{cpu['ready'] - cpu['served']:.3f}",
        f"{(cpu['ready'] - cpu['served']) / cpu['bare']:.1f}",
        "",
    )
    console = Console(width=160)
    console.print(table)
    phases, quickest = phases_table(rows["ready"])
    console.print(phases)
    by_imports, changes = imports_table(imports)
    console.print(by_imports)
    console.print(after_ready(rows["firsts"], cpu["bare"]))
    console.print(floor_line(wall, cpu, quickest, changes))
    console.print(
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
