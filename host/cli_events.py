"""``agenthost events``: list, show, follow, export and replay the audit trail.

Mounted by host/cli.py as ``app.add_typer(events_app, name="events")``. The store is the one the
``audit`` plugin of a host with the same configuration writes (SQLite file in the data dir by
default, PostgreSQL when the memory store is PostgreSQL or ``plugins.audit`` says so), or
``--store`` (a SQLite path or a ``postgresql://`` URL). ``--agent`` takes an agent's name or id.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar
from uuid import UUID

import typer
from rich.console import Console
from rich.table import Table

from contracts.config import HostConfig
from contracts.errors import AgentHostError
from contracts.eventstore import (
    DomainEvent,
    EventFilter,
    EventStore,
    EventStoreError,
    EventStoreSettings,
)
from contracts.storage import LocalFileSettings
from host.cli_output import print_table
from host.cli_progress import progress
from host.config import event_store_variable
from host.eventstore import PostgresEventStore, SqliteEventStore
from host.postgres_config import postgres_plugin_url

__all__ = ["events_app"]

T = TypeVar("T")
S = TypeVar("S")

AUDIT = "audit"
"""The plugin whose event store these commands read (found through its entry point)."""

events_app = typer.Typer(
    name="events",
    help="Inspect the audit trail: list, show, follow, export and replay recorded events.",
    no_args_is_help=True,
)
console = Console()
hints = Console(stderr=True)

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="SQLite file or postgresql:// URL (default: AGENTHOST_EVENT_STORE, else the audit"
        " plugin's store in the data dir)",
    ),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (default: AGENTHOST_DATA_DIR or ./data)"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line")]


_config_path: list[Path | None] = [None]
"""The ``agenthost --config`` file of this invocation (set by `_root` on every invocation)."""
_log_level: list[str | None] = [None]
"""The ``agenthost --log-level`` of this invocation (set by `_root`)."""


@events_app.callback()
def _root(ctx: typer.Context) -> None:
    """Inspect the audit trail: list, show, follow, export and replay recorded events."""
    params = ctx.find_root().params
    _config_path[0] = params.get("config")
    _log_level[0] = params.get("log_level")


def configured() -> tuple[EventStoreSettings, HostConfig]:
    """The audit plugin's settings (``plugins.audit``) and the host config (``agenthost
    --config`` honoured)."""
    from host.config import ConfigError, load_config

    try:
        config = load_config(_config_path[0]).config
    except ConfigError as exc:
        raise EventStoreError(str(exc)) from None
    return audit_settings(config), config


def audit_settings(config: HostConfig) -> EventStoreSettings:
    """The ``audit`` plugin's settings in `config`, found through its entry point."""
    return _settings_as(AUDIT, config, EventStoreSettings)  # type: ignore[type-abstract]


def _settings_as(plugin: str, config: HostConfig, kind: type[S]) -> S:
    """Plugin `plugin`'s settings in `config`, which must satisfy the protocol `kind`."""
    from host.plugin_lookup import PluginNotFoundError, plugin_settings

    try:
        settings = plugin_settings(plugin, config)
    except PluginNotFoundError as exc:
        raise EventStoreError(str(exc)) from None
    if not isinstance(settings, kind):
        raise EventStoreError(
            f"plugin {plugin}'s settings ({type(settings).__name__}) do not say where its"
            f" store is ({kind.__name__})"
        )
    return settings


def _memory_store(config: HostConfig) -> str:
    """The memory store's backend as ``agenthost run`` picks it: ``postgres`` when pinned by
    ``services.database`` or when ``sqlite`` is disabled, else ``sqlite``."""
    pinned = config.services.get("database")
    if pinned is not None:
        return pinned
    return "postgres" if "sqlite" in config.plugins.disabled else "sqlite"


def _postgres_url(config: HostConfig) -> str:
    url = postgres_plugin_url(config)
    if url is None:
        raise EventStoreError(
            "the audit trail shares the postgres memory store's database, but"
            " plugins.postgres.url is not set: set it, or pass --store postgresql://..."
        )
    return url


def store_location(
    store: str | None, data_dir: Path | None, config: HostConfig | None = None
) -> str | Path:
    """Where the event store is: `store` (a PostgreSQL URL or a SQLite path), else the one the
    host's configuration (`config`, else this invocation's) gives the audit plugin (as
    ``agenthost run`` opens it: its own SQLite file or PostgreSQL URL, or the memory store's
    database)."""
    if store is not None and store.startswith(("postgresql://", "postgres://")):
        return store
    if store is not None:
        return Path(store)
    if config is None:
        settings, config = configured()
    else:
        settings = audit_settings(config)
    memory = _memory_store(config)
    if settings.postgres_url is not None:
        return settings.postgres_url.get_secret_value()
    backend = settings.backend
    if backend == "auto":
        backend = "postgres" if memory == "postgres" else "sqlite"
    if backend == "postgres":
        return _postgres_url(config)
    base = data_dir or config.data_dir
    if settings.share_memory_database:
        sqlite = _settings_as("sqlite", config, LocalFileSettings)  # type: ignore[type-abstract]
        return sqlite.resolve_path(base)
    return settings.resolve_path(base)


async def open_store(
    store: str | None,
    data_dir: Path | None,
    *,
    create: bool = False,
    config: HostConfig | None = None,
) -> EventStore:
    """The event store at `store_location` (a SQLite file must exist unless `create`)."""
    where = store_location(store, data_dir, config)
    if isinstance(where, str):
        return await PostgresEventStore.connect(where)
    if not create and str(where) != ":memory:" and not where.exists():
        raise EventStoreError(f"no event store at {where} (is the audit plugin enabled?)")
    return await SqliteEventStore.open(where)


def aggregate_of(agent: str | None) -> str | None:
    """The aggregate id of `agent`: an agent id or ``host`` as given, else the id of the agent
    with that name (the name a character file gives)."""
    if agent is None or agent == "host":
        return agent
    try:
        return str(UUID(agent))
    except ValueError:
        from host.runtime import agent_id_for

        return str(agent_id_for(agent))


def _run(
    store: str | None,
    data_dir: Path | None,
    body: Callable[[EventStore], Awaitable[T]],
    config: HostConfig | None = None,
) -> T:
    async def main() -> T:
        where = store if store is not None else event_store_variable()
        opened = await open_store(where, data_dir, config=config)
        try:
            return await body(opened)
        finally:
            await opened.close()

    try:
        return asyncio.run(main())
    except (AgentHostError, ValueError, OSError) as exc:  # OSError: an export file not writable
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def summary(event: DomainEvent, width: int = 70) -> str:
    """A one-line gist of an event's data (message text, action name, model type...)."""
    data = event.data
    content = data.get("content")
    parts: list[str] = []
    if isinstance(content, dict) and content.get("text"):
        parts.append(repr(content["text"]))
    for key in ("model_type", "name", "action", "provider", "error"):
        value = data.get(key)
        if isinstance(value, str | int | float) and value != "":
            parts.append(f"{key}={value}")
    text = " ".join(parts) or json.dumps(data, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(events: list[DomainEvent], title: str) -> Table:
    table = Table(title=title)
    for column in ("pos", "time (UTC)", "aggregate", "ver", "type", "summary"):
        table.add_column(column, justify="right" if column in ("pos", "ver") else "left")
    for e in events:
        table.add_row(
            str(e.position),
            e.timestamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            e.aggregate_id,
            str(e.version),
            e.event_type,
            summary(e),
        )
    return table


def _print_json(events: list[DomainEvent]) -> None:
    for e in events:
        sys.stdout.write(e.model_dump_json() + "\n")


@events_app.command("list")
def list_events(
    agent: Annotated[str | None, typer.Option("--agent", help="Agent name or id")] = None,
    types: Annotated[
        list[str] | None, typer.Option("--type", help="Event type (repeatable)")
    ] = None,
    from_position: Annotated[
        int, typer.Option("--from", help="Only events after this global position")
    ] = 0,
    since: Annotated[
        datetime | None, typer.Option("--since", help="Only events at or after (ISO time, UTC)")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many")] = 100,
    as_json: JsonOption = False,
    store: StoreOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List recorded events in global order (filter by agent, type, position, time)."""
    flt = EventFilter(
        aggregate_id=aggregate_of(agent),
        event_types=tuple(types) if types else None,
        since=_utc(since),
    )
    events = _run(store, data_dir, lambda s: s.read_all(from_position, limit, flt))
    if as_json:
        _print_json(events)
        return
    if not events:
        console.print("no events")
        return
    print_table(_table(events, f"{len(events)} event(s)"), console)
    if len(events) == limit:
        hints.print(f"[dim]more: --from {events[-1].position}[/dim]")


@events_app.command("show")
def show(
    aggregate: Annotated[str, typer.Argument(help="Agent name or id, or 'host'")],
    from_version: Annotated[int, typer.Option("--from-version", min=0)] = 0,
    full: Annotated[bool, typer.Option("--full", help="Print each event's data")] = False,
    as_json: JsonOption = False,
    store: StoreOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Show one aggregate's events (an agent's audit trail) in version order."""
    aggregate = aggregate_of(aggregate) or aggregate
    events = _run(store, data_dir, lambda s: s.get_events(aggregate, from_version))
    if as_json:
        _print_json(events)
        return
    if not events:
        console.print(f"no events for aggregate {aggregate!r}")
        raise typer.Exit(1)
    print_table(_table(events, f"aggregate {aggregate} (version {events[-1].version})"), console)
    if full:
        for e in events:
            console.rule(f"v{e.version} {e.event_type}")
            console.print_json(json.dumps(e.model_dump(mode="json")))


@events_app.command("aggregates")
def aggregates(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table")] = False,
    store: StoreOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List every aggregate (agent) with its current version."""
    rows = _run(store, data_dir, lambda s: s.aggregates())
    if as_json:
        data = [{"aggregate": name, "version": version} for name, version in rows]
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    table = Table("aggregate", "version")
    for name, version in rows:
        table.add_row(name, str(version))
    print_table(table, console)


@events_app.command("tail")
def tail(
    from_position: Annotated[
        int | None, typer.Option("--from", help="Start after this position (default: the end)")
    ] = None,
    types: Annotated[list[str] | None, typer.Option("--type")] = None,
    agent: Annotated[str | None, typer.Option("--agent")] = None,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Stop after this many events")
    ] = None,
    store: StoreOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Follow new events as they are recorded (Ctrl-C to stop)."""
    flt = EventFilter(aggregate_id=aggregate_of(agent), event_types=tuple(types) if types else None)

    async def follow(s: EventStore) -> None:
        start = await s.last_position() if from_position is None else from_position
        seen = 0
        async for e in s.subscribe(start, flt):
            console.print(
                f"{e.position:>7} {e.timestamp:%H:%M:%S} {e.aggregate_id} v{e.version}"
                f" {e.event_type} {summary(e)}",
                highlight=False,
            )
            seen += 1
            if count is not None and seen >= count:
                return

    _run(store, data_dir, follow)


@events_app.command("export")
def export(
    output: Annotated[Path, typer.Argument(help="JSON Lines file to write ('-' for stdout)")],
    agent: Annotated[str | None, typer.Option("--agent")] = None,
    from_position: Annotated[int, typer.Option("--from")] = 0,
    store: StoreOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Export events (all, or one agent's) as JSON Lines, streaming."""
    flt = EventFilter(aggregate_id=aggregate_of(agent))

    async def dump(s: EventStore) -> int:
        count = 0
        last = await s.last_position()
        out = sys.stdout if str(output) == "-" else output.open("w", encoding="utf-8")
        # positions left to read: the exact count without a filter, a bound with one
        with progress(total=True) as bar:
            task = bar.add_task("exporting events", total=max(last - from_position, 0))
            try:
                async for e in s.iter_all(from_position, flt):
                    out.write(e.model_dump_json() + "\n")
                    count += 1
                    if count % 256 == 0:
                        bar.update(task, completed=(e.position or 0) - from_position)
            finally:
                if out is not sys.stdout:
                    out.close()
            bar.update(task, completed=max(last - from_position, 0))
        return count

    written = _run(store, data_dir, dump)
    if str(output) != "-":
        console.print(f"wrote {written} event(s) to {output}")


@events_app.command("replay")
def replay(
    aggregate: Annotated[
        str, typer.Argument(help="Agent (name or id) whose conversation to replay")
    ],
    room: Annotated[
        UUID | None, typer.Option("--room", help="Only this room (default: every room)")
    ] = None,
    rerun: Annotated[
        bool,
        typer.Option(
            "--rerun/--no-rerun",
            help="Re-run each recorded message through the agent with the recorded model"
            " outputs and report divergences",
        ),
    ] = True,
    store: StoreOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Rebuild an agent's conversation state from its events, compare it with the memory store,
    and re-run the conversation with the recorded model outputs."""
    from host.eventstore.replay import replay_agent
    from host.logs import configure_logging

    try:
        _, config = configured()
        # the report is the output: only the replay host's warnings and errors beside it,
        # unless ``agenthost --log-level`` asks for more (logging.file is honoured either way)
        level = _log_level[0] or "WARNING"
        configure_logging(config.logging.model_copy(update={"level": level}))
    except (EventStoreError, OSError, ValueError) as exc:  # the config, or its log file
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2 if isinstance(exc, EventStoreError) else 1) from exc
    report = _run(
        store,
        data_dir,
        lambda s: replay_agent(
            s,
            aggregate_of(aggregate) or aggregate,
            room_id=room,
            rerun=rerun,
            data_dir=data_dir,
            config=config,
        ),
        config,
    )
    for line in report.lines():
        console.print(line, highlight=False)
    if not report.ok:
        raise typer.Exit(1)


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    from datetime import UTC

    return value.replace(tzinfo=UTC)


def main(argv: list[str] | None = None) -> Any:
    """Run ``events`` on its own (``python -m host.cli_events``)."""
    return events_app(argv, prog_name="agenthost events")


if __name__ == "__main__":
    main()
