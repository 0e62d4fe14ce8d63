"""The HTTP API under load: C clients in another process, one room each, against a real uvicorn
server of the default host, compared with the same host's pipeline driven in-process.

The default host (SQLite file, ELIZA, audit trail and every builtin plugin; the hashed local
embeddings unless ``--model-embeddings``) serves on a free 127.0.0.1 port. Baseline, same run,
a host of the same configuration on a fresh data dir: C in-process clients, one room each, each
awaiting its reply before sending the next message (`AgentRuntime.process_message`).
Then this script runs itself again as a separate process (``--client``): C aiohttp clients doing
the same over ``POST /agents/eliza/messages`` (with ``--keys``, each with an ``Idempotency-Key``).
Afterwards the store is read: every accepted message (a 200 and its ``message_id``) must be
stored exactly once with exactly one reply, and nothing else may be in the clients' rooms.

    .venv/bin/python bench/http_load.py [--clients 50] [--messages 20] [--keys] [--profile out]
                                        [--client-lib httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import httpx
from rich.console import Console
from rich.table import Table

from contracts.config import (
    AgentsSettings,
    HostConfig,
    HttpSettings,
    LoggingSettings,
    PluginsSettings,
)
from contracts.memory import MemoryQuery
from host.app import Host
from host.config import LoadedConfig

TEXTS = [
    "I feel sad about my work",
    "My mother never listens to me",
    "I dream about flying over the sea",
    "Why can't I sleep at night?",
    "I am not sure what I want",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# ---------------------------------------------------------------------------------- client side


async def client_run(
    url: str, clients: int, messages: int, keys: bool, library: str = "aiohttp"
) -> dict[str, Any]:
    """`clients` concurrent clients, one room each, `messages` each, one at a time.

    The client library is aiohttp by default: on 2 cores the load generator competes with the
    server for the CPU, and httpx (``--client-lib httpx``) needed a whole core for ~200
    requests/s, so it, not the server, set the pace."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    accepted: list[tuple[str, str]] = []
    rooms = [str(uuid4()) for _ in range(clients)]
    async with _poster(url, clients, library) as post:

        async def one(room: str) -> None:
            for i in range(messages):
                body = {"text": TEXTS[i % len(TEXTS)], "room_id": room, "user": room[:8]}
                headers = {"Idempotency-Key": f"{room}:{i}"} if keys else {}
                t = time.perf_counter()
                try:
                    status, answer = await post("/agents/eliza/messages", body, headers)
                except (httpx.HTTPError, aiohttp.ClientError) as exc:
                    errors[type(exc).__name__] += 1
                    continue
                latencies.append(time.perf_counter() - t)
                statuses[status] += 1
                if status == 200:
                    accepted.append((room, answer["message_id"]))

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(room) for room in rooms))
        elapsed = time.perf_counter() - started
    return {
        "elapsed": elapsed,
        "client_cpu": (time.process_time() - cpu) / elapsed,
        "latencies": latencies,
        "statuses": dict(statuses),
        "errors": dict(errors),
        "accepted": accepted,
        "rooms": rooms,
        "library": library,
    }


Post = Callable[[str, dict[str, Any], dict[str, str]], Awaitable[tuple[int, Any]]]


@asynccontextmanager
async def _poster(url: str, clients: int, library: str) -> AsyncIterator[Post]:
    """A keep-alive client of `library` with a connection per client: POST -> (status, JSON)."""
    if library == "httpx":
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
            await http.get("/health")

            async def post_httpx(
                path: str, body: dict[str, Any], headers: dict[str, str]
            ) -> tuple[int, Any]:
                response = await http.post(path, json=body, headers=headers)
                return response.status_code, response.json()

            yield post_httpx
        return
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:
        async with session.get("/health") as warm:
            await warm.read()

        async def post_aiohttp(
            path: str, body: dict[str, Any], headers: dict[str, str]
        ) -> tuple[int, Any]:
            async with session.post(path, json=body, headers=headers) as response:
                return response.status, await response.json()

        yield post_aiohttp


# ---------------------------------------------------------------------------------- server side


async def in_process(host: Host, clients: int, messages: int) -> dict[str, Any]:
    assert host.agents is not None
    runtime = host.agents.get("eliza")
    latencies: list[float] = []

    async def one(room: UUID) -> None:
        entity = uuid4()
        for i in range(messages):
            message = runtime.new_message(TEXTS[i % len(TEXTS)], room_id=room, entity_id=entity)
            t = time.perf_counter()
            await runtime.process_message(message)
            latencies.append(time.perf_counter() - t)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(uuid4()) for _ in range(clients)))
    return {
        "elapsed": time.perf_counter() - started,
        "cpu": time.process_time() - cpu,
        "latencies": latencies,
    }


async def over_http(
    host: Host, clients: int, messages: int, keys: bool, profile: Path | None, library: str
) -> dict[str, Any]:
    assert host.http is not None
    args = [sys.executable, __file__, "--client", host.http.url]
    args += ["--clients", str(clients), "--messages", str(messages), "--client-lib", library]
    args += ["--keys"] if keys else []
    # CPU time, not wall: on a shared machine wall time charges waits for a core to whoever ran
    profiler = cProfile.Profile(time.process_time) if profile is not None else None
    if profiler is not None:
        profiler.enable()
    cpu = time.process_time()
    process = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    cpu = time.process_time() - cpu
    if profiler is not None:
        profiler.disable()
        assert profile is not None
        profiler.dump_stats(profile)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    if process.returncode != 0:
        raise SystemExit(f"the load generator failed (exit {process.returncode})")
    result: dict[str, Any] = json.loads(out)
    result["cpu"] = cpu  # the host's, over the client's run and its start
    return result


async def stored_once(host: Host, result: dict[str, Any]) -> dict[str, int]:
    """Every accepted message stored once with one reply; nothing else in the clients' rooms."""
    assert host.agents is not None
    database = host.agents.get("eliza").database
    accepted = Counter(message for _room, message in result["accepted"])
    problems = Counter[str]()
    problems["accepted twice (same id)"] = sum(1 for n in accepted.values() if n > 1)
    for room in result["rooms"]:
        rows = await database.get_memories(
            MemoryQuery(room_id=UUID(room), order="asc", limit=100_000)
        )
        incoming = Counter(str(r.id) for r in rows if r.entity_id != r.agent_id)
        replies = Counter((r.content.model_extra or {}).get("in_reply_to") for r in rows)
        mine = {m for r, m in result["accepted"] if r == room}
        problems["accepted, not stored"] += sum(1 for m in mine if incoming[m] == 0)
        problems["stored twice"] += sum(1 for n in incoming.values() if n > 1)
        problems["stored, not accepted"] += sum(1 for m in incoming if m not in mine)
        problems["without exactly one reply"] += sum(1 for m in mine if replies[m] != 1)
    return dict(problems)


def _row(label: str, n: int, result: dict[str, Any], base: float | None) -> list[str]:
    rate = n / result["elapsed"]
    lat = result["latencies"]
    return [
        label,
        str(n),
        f"{rate:,.0f}",
        f"{percentile(lat, 0.5) * 1000:.1f}",
        f"{percentile(lat, 0.99) * 1000:.1f}",
        f"{result['cpu'] / n * 1000:.2f}",
        "1.00x" if base is None else f"{rate / base:.2f}x",
    ]


@asynccontextmanager
async def fresh_host(model_embeddings: bool) -> AsyncIterator[Host]:
    """The default host on a new data dir, serving HTTP on a free port, warmed up."""
    with tempfile.TemporaryDirectory() as directory:
        config = HostConfig(
            data_dir=Path(directory),
            agents=AgentsSettings(characters_dir=Path(directory) / "no-characters"),
            http=HttpSettings(port=0),
            logging=LoggingSettings(level="WARNING"),
            # the embedding model's time (e5: ~30 ms a message on this machine) would hide what
            # HTTP costs: hashed embeddings unless asked, as in bench/runtime.py
            plugins=PluginsSettings(disabled=[] if model_embeddings else ["e5", "minilm"]),
        )
        async with Host(LoadedConfig(config, None)) as host:
            await host.start_http()
            assert host.agents is not None
            runtime = host.agents.get("eliza")
            # warm-up: first-use costs (index creation, caches) out of the figures
            await runtime.process_message(
                runtime.new_message("hello", room_id=uuid4(), entity_id=uuid4())
            )
            await client_run_warm(host)
            yield host


async def run(
    clients: int,
    messages: int,
    keys: bool,
    profile: Path | None,
    model_embeddings: bool,
    library: str,
) -> None:
    # Each run on its own host of the same configuration: the pipeline slows as the store
    # grows (the recall provider's search), so the second run on one store would lose.
    async with fresh_host(model_embeddings) as host:
        base = await in_process(host, clients, messages)
    async with fresh_host(model_embeddings) as host:
        http = await over_http(host, clients, messages, keys, profile, library)
        problems = await stored_once(host, http)
    n = clients * messages
    base_rate = n / base["elapsed"]
    table = Table(title=f"{clients} clients x {messages} messages, one room each")
    columns = ("path", "messages", "msgs/s", "p50 ms", "p99 ms", "host CPU ms/msg", "x in-process")
    for column in columns:
        table.add_column(column, justify="left" if column == "path" else "right")
    table.add_row(*_row("in-process pipeline (baseline)", n, base, None))
    label = "HTTP, uvicorn, client in another process" + (" (Idempotency-Key)" if keys else "")
    table.add_row(*_row(label, n, http, base_rate))
    console = Console()
    console.print(table)
    console.print(
        f"statuses: {http['statuses']}, transport errors: {http['errors'] or 'none'};"
        f" accepted {len(http['accepted'])} of {n}"
    )
    console.print(
        f"load generator ({library}) CPU: {http['client_cpu']:.0%} of one core while it ran"
    )
    console.print(f"stored-once check: {problems}")
    if any(problems.values()):
        raise SystemExit("some accepted message was not stored exactly once (see above)")


async def client_run_warm(host: Host) -> None:
    """One request over HTTP before measuring (the app's first schema and route work)."""
    assert host.http is not None
    async with httpx.AsyncClient(base_url=host.http.url, timeout=30) as http:
        (await http.post("/agents/eliza/messages", json={"text": "hi"})).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--messages", type=int, default=20, help="per client")
    parser.add_argument("--keys", action="store_true", help="send an Idempotency-Key each")
    parser.add_argument("--profile", type=Path, help="cProfile the server into this file")
    parser.add_argument(
        "--model-embeddings", action="store_true", help="keep e5/minilm when installed"
    )
    parser.add_argument(
        "--http-first", action="store_true", help="the HTTP run before the baseline"
    )
    parser.add_argument(
        "--client-lib", choices=("aiohttp", "httpx"), default="aiohttp", help="the load generator's"
    )
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        result = asyncio.run(
            client_run(args.client, args.clients, args.messages, args.keys, args.client_lib)
        )
        json.dump(result, sys.stdout)
        return
    asyncio.run(
        run(
            args.clients,
            args.messages,
            args.keys,
            args.profile,
            args.model_embeddings,
            args.client_lib,
        )
    )


if __name__ == "__main__":
    main()
