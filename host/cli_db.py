"""``agenthost db start | stop | status``: a local PostgreSQL with pgvector (host/localdb.py);
``agenthost db index``: build the configured memory store's vector index, with progress;
``agenthost db migrate``: apply the stores' schema migrations now (host/db_migrate.py).

Mounted by host/cli.py as ``app.add_typer(db_app, name="db")``.
"""

from __future__ import annotations

import enum
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from contracts.storage import DATABASE
from host.cli_progress import progress
from host.db_migrate import StoreMigration
from host.localdb import LocalDbError, LocalDbStatus, start, status, stop

__all__ = ["db_app"]

db_app = typer.Typer(
    name="db",
    help="A local PostgreSQL with pgvector for the memory store (the pgserver extra).",
    no_args_is_help=True,
)
console = Console(soft_wrap=True, highlight=False)
errors = Console(stderr=True, soft_wrap=True, highlight=False)
T = TypeVar("T")


class IndexKind(enum.StrEnum):
    hnsw = "hnsw"
    ivf = "ivf"


DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (default: the config's data_dir)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON instead of text.")]


def _data_dir(given: Path | None) -> Path:
    if given is not None:
        return given
    from host import cli

    return cli._load().config.data_dir


def _report(state: LocalDbStatus, as_json: bool) -> None:
    if as_json:
        data = {"directory": str(state.directory), "running": state.running, "url": state.url,
                "pid": state.pid}  # fmt: skip
        sys.stdout.write(json.dumps(data) + "\n")
        return
    if not state.running:
        console.print(f"PostgreSQL in {escape(str(state.directory))}: not running")
        return
    console.print(f"PostgreSQL in {escape(str(state.directory))}: running (pid {state.pid})")
    console.print(f"url: {escape(state.url or '')}")
    console.print("use it for the memory store (and the audit trail):")
    for line in state.config_lines():
        console.print(f"  export {escape(line)}")


def _fail(exc: LocalDbError) -> typer.Exit:
    errors.print(f"[red]error:[/] {escape(str(exc))}")
    return typer.Exit(1)


def _while_showing(message: str, action: Callable[[Path], T], data_dir: Path | None) -> T:
    """Run `action` on the data dir with `message` shown on stderr; a `LocalDbError` exits 1
    with the error."""
    where = _data_dir(data_dir)
    try:
        with errors.status(message):
            return action(where)
    except LocalDbError as exc:
        raise _fail(exc) from None


@db_app.command("start")
def db_start(data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Start PostgreSQL with pgvector in the data dir (created on first use) and print the URL."""
    starting = "starting PostgreSQL (the first start creates the cluster)..."
    state = _while_showing(starting, start, data_dir)
    _report(state, as_json)


@db_app.command("status")
def db_status(data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Whether the local PostgreSQL runs, and its URL (exit code 3 when it does not run)."""
    try:
        state = status(_data_dir(data_dir))
    except LocalDbError as exc:
        raise _fail(exc) from None
    _report(state, as_json)
    if not state.running:
        raise typer.Exit(3)


@db_app.command("stop")
def db_stop(data_dir: DataDirOption = None) -> None:
    """Stop the local PostgreSQL (its data stays in the data dir)."""
    stopped = _while_showing("stopping PostgreSQL...", stop, data_dir)
    console.print("stopped" if stopped else "not running")


IndexOption = Annotated[
    IndexKind, typer.Option("--type", help="The vector index to build: hnsw or ivf.")
]


@db_app.command("index")
def db_index(
    kind: IndexOption = IndexKind.hnsw,
    table: Annotated[str, typer.Option("--table", help="The memory table.")] = "messages",
) -> None:
    """Build the memory store's vector index now (a warm-up after a bulk import), on the store
    the configuration names (SQLite, PostgreSQL...), with a progress display meanwhile."""
    from host import cli
    from host.app import Host

    loaded = cli._load()

    async def build() -> float:
        instance = Host(loaded)
        await instance.start(agents=False)
        try:
            database = await instance.container.aresolve(DATABASE)
            started = time.perf_counter()
            with progress(total=False) as shown:
                shown.add_task(f"building the {kind.value} index of {table}", total=None)
                await database.build_index(kind.value, table)
            return time.perf_counter() - started
        finally:
            await instance.stop()

    seconds = cli._run(build)
    console.print(f"{kind.value} index of {table} built in {seconds:.1f} s")


@db_app.command("migrate")
def db_migrate(data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Apply the schema migrations of the configured memory store and event store now (they
    also migrate when the host opens them), with progress per step; again, it does nothing."""
    from host import cli
    from host.db_migrate import migrate_stores

    loaded = cli._load()

    async def work() -> list[StoreMigration]:
        with progress(total=True) as shown:
            task = shown.add_task("migrating", total=None)

            def step(store: str, n: int, of: int, description: str) -> None:
                shown.update(task, description=f"{store}: {description}", total=of, completed=n - 1)

            return await migrate_stores(loaded.config, data_dir, step)

    done = cli._run(work)
    if as_json:
        sys.stdout.write(json.dumps([d.as_json() for d in done]) + "\n")
        return
    for d in done:
        name = f"{d.store} store" if d.store == "memory" else "event store"
        if d.skipped:
            console.print(f"{name}: skipped ({escape(d.skipped)})")
            continue
        where = f"{name} ({d.backend} {escape(d.where)})"
        now = f" (schema version {d.version})" if d.version is not None else ""
        if not d.applied:
            console.print(f"{where}: up to date{now}")
            continue
        console.print(f"{where}: applied {len(d.applied)} migration(s){now}")
        for description in d.applied:
            console.print(f"  {escape(description)}")
