"""Start-up leaves out what only later work needs (issue 20): a fresh host started to ready
with the builtin plugins and HTTP on has not imported faiss, the PostgreSQL drivers, the openai
plugin's HTTP client and retry library, the console (its pages' routes and state, installed at
its first request) and its template engine, prometheus-client (the ``/metrics`` exposition) or
watchdog (dev mode's reloader); they load at first use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

LAZY = (
    "faiss",
    "psycopg",
    "psycopg_pool",
    "pgvector",
    "httpx",
    "httpx_sse",
    "stamina",
    "jinja2",
    "prometheus_client",
    "watchdog",
    "host.reload",
    "host.console.routes",
    "host.console.state",
    "host.console.deps",
    "host.eventstore.replay",
)

SCRIPT = """
import asyncio, json, sys
from host.app import Host
from host.config import load_config

async def main():
    env = {"AGENTHOST_DATA_DIR": sys.argv[1], "AGENTHOST_HTTP__PORT": "0"}
    host = Host(load_config(None, environ=env))
    await host.start(http=True)
    reader, writer = await asyncio.open_connection("127.0.0.1", host.http.port)
    writer.write(b"GET /ready HTTP/1.1\\r\\nHost: t\\r\\nConnection: close\\r\\n\\r\\n")
    status = (await reader.readline()).split()[1].decode()
    writer.close()
    loaded = sorted(name for name in json.loads(sys.argv[2]) if name in sys.modules)
    reader, writer = await asyncio.open_connection("127.0.0.1", host.http.port)
    head = f"GET /console/agents HTTP/1.1\\r\\nHost: 127.0.0.1:{host.http.port}\\r\\n"
    writer.write(head.encode() + b"Connection: close\\r\\n\\r\\n")
    answer = (await reader.read()).decode()
    writer.close()
    console = {
        "status": answer.split()[1],
        "headers": "frame-ancestors 'none'" in answer,
        "page": "<html" in answer and "Eliza" in answer,
        "installed": "host.console.routes" in sys.modules,
    }
    await host.stop()
    print(json.dumps({"status": status, "loaded": loaded, "console": console}))

asyncio.run(main())
"""


def test_ready_with_http_imports_none_of_the_lazy_modules(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "data"), json.dumps(LAZY)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "200" and result["loaded"] == []
    # the console's first request installs it and is answered like any later one
    assert result["console"] == {"status": "200", "headers": True, "page": True, "installed": True}


def test_the_lazy_modules_load_at_first_use() -> None:
    """The names `LAZY` lists are the modules the first use imports (the test above cannot pass
    by a typo in them)."""
    code = (
        "import sys, host.vectors as v, builtin_plugins.postgres as p, host.eventstore as e;"
        "v.faiss.IndexFlatIP; p.PostgresAdapter; e.PostgresEventStore;"
        "import builtin_plugins.openai.plugin, httpx_sse, stamina, jinja2, watchdog.observers;"
        "import host.reload, host.console.routes;"
        "from host.metrics.exposition import MemoryExporter;"
        "from host.metrics.memory import InMemoryMetrics;"
        "MemoryExporter(InMemoryMetrics()).exposition();"
        f"print(sorted(n for n in {LAZY!r} if n not in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"
