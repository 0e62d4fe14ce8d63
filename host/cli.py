"""The ``agenthost`` command line (typer + rich).

Exit codes: 0 ok, 2 usage or configuration errors, 1 runtime errors. Global options go before
or after the command: ``agenthost --config my.yaml run`` or ``agenthost run --log-level debug``.
Tables are plain columns when stdout is not a terminal (host/cli_output.py).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from loguru import logger
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from contracts.agent import CharacterError
from contracts.cluster import ClusterRole
from contracts.errors import AgentHostError
from host import __version__
from host.cli_db import db_app
from host.cli_events import events_app
from host.cli_knowledge import knowledge_app
from host.cli_memory import memory_app
from host.cli_output import HoistingGroup, print_table
from host.cli_scaffold import new_plugin
from host.cluster.cli import cluster_app
from host.config import (
    MASK,
    ConfigError,
    LoadedConfig,
    flatten,
    load_config,
    masked,
    secret_paths,
    secret_values,
)
from host.logs import configure_logging, redact
from host.secrets import scrub

__all__ = ["app", "main"]

T = TypeVar("T")


def stop_signals() -> tuple[signal.Signals, ...]:
    """What stops ``agenthost run`` cleanly (everything written first): Ctrl-C, a service
    manager's stop, and the terminal closing (SIGHUP's default would kill the host mid-write),
    unless SIGHUP is ignored (``nohup``: the host outlives its terminal) or unknown (Windows)."""
    hangup = getattr(signal, "SIGHUP", None)
    if hangup is None or signal.getsignal(hangup) is signal.SIG_IGN:
        return (signal.SIGINT, signal.SIGTERM)
    return (signal.SIGINT, signal.SIGTERM, hangup)


app = typer.Typer(
    name="agenthost",
    help="Run AI agents built from plugins: discovery, injection, events, memory, models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=HoistingGroup,
)
plugins_app = typer.Typer(help="Installed plugins.", no_args_is_help=True)
config_app = typer.Typer(help="The effective configuration.", no_args_is_help=True)
app.add_typer(plugins_app, name="plugins")
plugins_app.command("new")(new_plugin)
app.add_typer(config_app, name="config")

console = Console()
errors = Console(stderr=True, soft_wrap=True)


class _State:
    config_path: Path | None = None
    log_level: str | None = None


state = _State()


def _exit(message: str, code: int) -> typer.Exit:
    """Print ``error: message`` on stderr (verbatim: brackets in it are not rich markup) and
    return the exit to raise."""
    errors.print(f"[red]error:[/] {escape(scrub(message))}", highlight=False)
    return typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        console.print(f"agenthost {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Config file (default: config/agenthost.yaml)."),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option("--log-level", help="Override logging.level.")
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """agenthost: a plugin host for AI agents."""
    state.config_path = config
    state.log_level = log_level


def _load(**overrides: Any) -> LoadedConfig:
    """The configuration, logging configured from it; config errors exit with code 2."""
    extra: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    if state.log_level:
        extra["logging"] = {"level": state.log_level}
    try:
        loaded = load_config(state.config_path, overrides=extra, overrides_source="command line")
    except ConfigError as exc:
        raise _exit(str(exc), 2) from None
    try:
        configure_logging(loaded.config.logging)
    except (OSError, ValueError) as exc:  # the log file cannot be opened
        source = loaded.source_of("logging.file")
        reason = getattr(exc, "strerror", None) or str(exc)
        raise _exit(
            f"logging.file (from {source.partition(':')[2] or source}): cannot write the log"
            f" file {loaded.config.logging.file}: {reason}",
            2,
        ) from None
    redact(secret_values(loaded.config))
    for warning in loaded.warnings:
        logger.bind(plugin="host").warning("{}", warning)
    return loaded


def _run(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine; config errors (a bad character file included) exit with code 2,
    library and OS errors (a port in use, an unreadable directory) with a one-line message and
    code 1."""
    try:
        return asyncio.run(make())  # type: ignore[arg-type]
    except (ConfigError, CharacterError) as exc:
        raise _exit(str(exc), 2) from None
    except (AgentHostError, OSError) as exc:
        raise _exit(str(exc), 1) from None


# run ---------------------------------------------------------------------


@app.command()
def run(
    dev: Annotated[
        bool, typer.Option("--dev", help="Reload plugins when their files change.")
    ] = False,
    port: Annotated[int | None, typer.Option("--port", help="HTTP port (http.port).")] = None,
    host: Annotated[str | None, typer.Option("--host", help="HTTP address (http.host).")] = None,
    role: Annotated[
        ClusterRole | None,
        typer.Option("--role", help="Cluster mode as api, worker (no HTTP) or both."),
    ] = None,
) -> None:
    """Start the host: plugins, agents and the HTTP API, until Ctrl-C, SIGTERM or SIGHUP."""
    http: dict[str, Any] = {"enabled": False} if role == "worker" else {}
    if port is not None:
        http["port"] = port
    if host is not None:
        http["host"] = host
    cluster = {"enabled": True, "role": role} if role is not None else None
    loaded = _load(dev=True if dev else None, http=http or None, cluster=cluster)
    from host.app import Host

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def abort() -> None:
            errors.print("[red]error:[/] teardown aborted by a second signal", highlight=False)
            raise SystemExit(1)  # leaves the event loop: what still runs is cancelled

        signals = stop_signals()

        def stopping() -> None:
            """First Ctrl-C / SIGTERM / SIGHUP: stop cleanly; a second Ctrl-C or SIGTERM aborts
            a teardown that hangs (a second hangup, which a terminal may send, does not)."""
            stop.set()
            logger.bind(plugin="host").info("stopping (a second Ctrl-C aborts the teardown)")
            for sig in signals:
                if sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, abort)
                else:
                    loop.add_signal_handler(sig, lambda: None)

        for sig in signals:
            loop.add_signal_handler(sig, stopping)
        await Host(loaded).run_forever(stop)

    _run(serve)


# plugins ---------------------------------------------------------------------


@plugins_app.command("list")
def plugins_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
    running: Annotated[
        bool, typer.Option("--running", help="Ask the running host (GET /plugins) instead.")
    ] = False,
    url: Annotated[
        str | None, typer.Option("--url", help="The running host to ask (implies --running).")
    ] = None,
) -> None:
    """Installed plugins: version, distribution, status (loaded/disabled/failed) and error.

    By default the plugins are loaded here, as ``agenthost run`` would load them; with
    ``--running`` (or ``--url``) the running host says what it loaded, including failed hot
    reloads in dev mode."""
    loaded = _load()
    if running or url is not None:
        base, headers = _running_host(loaded, url)
        rows = _get(f"{base}/plugins", headers)
    else:
        from host.app import Host

        async def load() -> list[dict[str, Any]]:
            instance = Host(loaded)
            await instance.start(agents=False)
            try:
                return [s.as_dict() for s in instance.statuses]
            finally:
                await instance.stop()

        rows = _run(load)
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title="agenthost plugins")
    for column in ("name", "version", "distribution", "status", "error"):
        table.add_column(column, overflow="fold")
    colours = {"loaded": "green", "disabled": "dim", "failed": "red"}
    for row in rows:
        status = f"[{colours[row['status']]}]{row['status']}[/]"
        error = row["error"] or ""
        last = row.get("last_reload")
        if last is not None and not last["ok"]:
            error = f"last reload failed (the previous version serves): {last['error']}"
        cells = (row["name"], row["version"] or "", row["distribution"] or "")
        table.add_row(*map(escape, cells), status, escape(error))
    print_table(table, console)


def _running_host(loaded: LoadedConfig, url: str | None) -> tuple[str, dict[str, str]]:
    """The running host's base URL (`url`, else the http config's address) and the headers
    its API wants (the configured API key)."""
    http = loaded.config.http
    base = (url or f"http://{http.host}:{http.port}").rstrip("/")
    headers = {}
    if http.api_key is not None:
        headers["X-API-Key"] = http.api_key.get_secret_value()
    return base, headers


def _get(address: str, headers: dict[str, str], **params: str) -> Any:
    """The JSON a running host answers at `address`; exit 1 naming the problem otherwise."""
    try:
        response = httpx.get(address, params=params or None, headers=headers, timeout=10)
        response.raise_for_status()
    except httpx.HTTPStatusError as exc:
        raise _exit(f"{address}: HTTP {exc.response.status_code} {exc.response.text}", 1) from None
    except httpx.HTTPError as exc:
        raise _exit(f"cannot reach {address}: {exc}", 1) from None
    return response.json()


@plugins_app.command("reload")
def plugins_reload(
    name: Annotated[str, typer.Argument(help="The plugin to reload.")],
    url: Annotated[
        str | None, typer.Option("--url", help="The running host (default: from http config).")
    ] = None,
) -> None:
    """Reload a plugin in a host running in dev mode (``agenthost run --dev``)."""
    base, headers = _running_host(_load(), url)
    try:
        response = httpx.post(f"{base}/plugins/{name}/reload", headers=headers, timeout=120)
    except httpx.HTTPError as exc:
        raise _exit(f"cannot reach {base}: {exc}", 1) from None
    if response.status_code == 404:
        raise _exit(str(response.json().get("detail", response.text)), 1)
    if response.status_code >= 400:
        raise _exit(f"HTTP {response.status_code}: {response.text}", 1)
    result = response.json()
    if not result["ok"]:
        raise _exit(f"reload of {name} failed: {result['error']}", 1)
    console.print(f"reloaded {', '.join(result['reloaded'])} in {result['duration'] * 1000:.0f} ms")


# config ---------------------------------------------------------------------


@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """The effective configuration with the source of each key; secrets masked."""
    loaded = _load()
    values = flatten(masked(loaded.config))
    for key in _plugin_secret_keys(loaded):
        if values.get(key):
            values[key] = MASK
    if as_json:
        data = {
            "file": str(loaded.path) if loaded.path else None,
            "values": {k: {"value": v, "source": loaded.source_of(k)} for k, v in values.items()},
        }
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    table = Table(title=f"agenthost config ({loaded.path or 'no file'})")
    table.add_column("key")
    table.add_column("value", overflow="fold")
    table.add_column("source", overflow="fold")
    for key, value in values.items():
        table.add_row(
            escape(key), escape(json.dumps(value, default=str)), escape(loaded.source_of(key))
        )
    print_table(table, console)


def _plugin_secret_keys(loaded: LoadedConfig) -> list[str]:
    """``plugins.<name>.<field>`` for every `SecretStr` field of the installed plugins'
    settings models (read from their manifests: discovery imports, constructs nothing)."""
    from host.discovery import discover

    keys: list[str] = []
    sections = set(loaded.config.plugins.model_extra or {})
    for item in discover():
        if item.manifest is None or item.manifest.settings is None:
            continue
        for section in {item.name, item.name.replace("-", "_")} & sections:
            keys += [f"plugins.{section}.{path}" for path in secret_paths(item.manifest.settings)]
    return keys


# chat and stats ---------------------------------------------------------------------


@app.command()
def chat(
    agent: Annotated[str | None, typer.Option("--agent", "-a", help="Agent name.")] = None,
) -> None:
    """Chat with an agent in the terminal (history kept in the agent's store)."""
    loaded = _load()
    if state.log_level is None and loaded.config.logging.file is None:
        # the terminal is the conversation: only warnings and errors interleave with it
        configure_logging(loaded.config.logging.model_copy(update={"level": "WARNING"}))
    from host.app import Host
    from host.chat import run_chat

    async def talk() -> int:
        instance = Host(loaded)
        await instance.start()
        try:
            assert instance.agents is not None
            return await run_chat(instance.agents, agent)
        finally:
            await instance.stop()

    _run(talk)


@app.command()
def stats(
    url: Annotated[
        str | None, typer.Option("--url", help="The running host (default: from http config).")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Only metrics containing this.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Current metrics of a running host, read from its HTTP API."""
    base, headers = _running_host(_load(), url)
    series = _get(f"{base}/stats", headers, **({"name": name} if name else {}))
    if as_json:
        sys.stdout.write(json.dumps(series, indent=2) + "\n")
        return
    table = Table(title=f"agenthost stats ({base})")
    for column in ("metric", "tags", "count / value", "mean", "p50", "p95", "max"):
        table.add_column(column, overflow="fold")
    for item in series:
        tags = escape(", ".join(f"{k}={v}" for k, v in sorted(item["tags"].items())))
        if item["kind"] == "histogram":
            table.add_row(
                escape(item["name"]),
                tags,
                str(item["count"]),
                f"{item['mean']:.4g}",
                f"{item['p50']:.4g}",
                f"{item['p95']:.4g}",
                f"{item['max']:.4g}",
            )
        else:
            table.add_row(escape(item["name"]), tags, f"{item['value']:g}", "", "", "", "")
    print_table(table, console)


app.add_typer(events_app, name="events")
app.add_typer(cluster_app, name="cluster")
app.add_typer(db_app, name="db")
app.add_typer(memory_app, name="memory")
app.add_typer(knowledge_app, name="knowledge")


def main() -> None:
    """Console script entry point."""
    app()
