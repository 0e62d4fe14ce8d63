"""Every CLI command that prints a table takes ``--json`` and prints plain columns (no box) when
stdout is not a terminal: found by walking the typer app, then each one run piped."""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import CodeType
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from host.cli import app
from host.eventstore import SqliteEventStore
from host.pytest_plugin import fresh_schema, schema_uri

from .conftest import LiveHost
from .test_cli import events_for

EVENTS = ["pos", "time", "(UTC)", "aggregate", "ver", "type", "summary"]
BOX = set("─━│┃┌┐└┘├┤┬┴┼┏┓┗┛┡┩╇╈═║╔╗╚╝╭╮╰╯")


def leaves(
    typer_app: typer.Typer, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Callable[..., Any]]]:
    """Every command of the typer app, with the function it runs."""
    for info in typer_app.registered_commands:
        assert info.callback is not None
        yield (*path, info.name or info.callback.__name__.replace("_", "-")), info.callback
    for group in typer_app.registered_groups:
        assert group.typer_instance is not None and group.name is not None
        yield from leaves(group.typer_instance, (*path, group.name))


def _names(code: CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names |= _names(const)
    return names


def prints_table(callback: Callable[..., Any]) -> bool:
    """Whether the command's function, or a function of its module that it calls, builds a
    rich ``Table``."""
    module = sys.modules[callback.__module__]
    sources = [inspect.getsource(callback)]
    for name in _names(callback.__code__):
        helper = getattr(module, name, None)
        if inspect.isfunction(helper) and helper.__module__ == module.__name__:
            sources.append(inspect.getsource(helper))
    return any("Table(" in source for source in sources)


TABLE_COMMANDS = {
    ("plugins", "list"),
    ("config", "show"),
    ("stats",),
    ("events", "list"),
    ("events", "show"),
    ("events", "aggregates"),
    ("knowledge", "list"),
    ("cluster", "status"),
}


def test_the_walk_finds_every_table_command_and_each_takes_json() -> None:
    commands = dict(leaves(app))
    assert ("db", "status") in commands and ("memory", "reembed") in commands  # the walk works
    found = {path for path, callback in commands.items() if prints_table(callback)}
    assert found == TABLE_COMMANDS
    for path in sorted(found):
        helped = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert helped.exit_code == 0 and "--json" in helped.stdout, f"{path} has no --json"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    data_dir.mkdir()

    async def record() -> None:
        store = await SqliteEventStore.open(data_dir / "events.sqlite3")
        for event in events_for("Ada", "Eliza"):
            await store.append_events(event.aggregate_id, [event])
        await store.close()

    asyncio.run(record())
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "manual.md").write_text("The thermostat blinks red when its battery is low. " * 20)
    path = tmp_path / "agenthost.yaml"
    path.write_text(
        yaml.safe_dump(
            {"data_dir": str(data_dir), "plugins": {"enabled": ["sqlite", "eliza", "knowledge"]}}
        )
    )
    added = CliRunner().invoke(app, ["--config", str(path), "knowledge", "add", str(docs)])
    assert added.exit_code == 0, added.output
    return path


def piped(*args: str) -> str:
    """The command's stdout with stdout not a terminal (CliRunner captures it), 80 columns."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.stdout


def check(args: list[str], header: list[str], lines: bool = False) -> Any:
    """Plain columns (no box-drawing character, the header as its first line), and ``--json``
    parses (one document, or one per line)."""
    text = piped(*args)
    assert not BOX & set(text), text
    assert text.splitlines()[0].split() == header, text
    data = piped(*args, "--json")
    return [json.loads(line) for line in data.splitlines()] if lines else json.loads(data)


def test_table_commands_print_plain_columns_and_json(
    config: Path, live_host: LiveHost, tmp_path: Path
) -> None:
    c = ["--config", str(config)]
    seen: set[tuple[str, ...]] = set()

    def run(path: tuple[str, ...], extra: list[str], header: list[str]) -> Any:
        seen.add(path)
        return check(
            [*path, *extra, *c], header, lines=path[0] == "events" and path[1] != "aggregates"
        )

    plugins = run(("plugins", "list"), [], ["name", "version", "distribution", "status", "error"])
    assert any(p["name"] == "knowledge" for p in plugins)
    shown = run(("config", "show"), [], ["key", "value", "source"])
    assert shown["values"]["data_dir"]["value"] == str(config.parent / "data")
    stats_args = ["--url", live_host.url]
    live = tmp_path / "live.yaml"
    live.write_text(yaml.safe_dump({"http": {"api_key": live_host.key}}))
    seen.add(("stats",))
    text = piped("stats", *stats_args, "--config", str(live))
    assert not BOX & set(text) and text.split()[:2] == ["metric", "tags"], text
    assert isinstance(
        json.loads(piped("stats", *stats_args, "--json", "--config", str(live))), list
    )
    listed = run(("events", "list"), [], EVENTS)
    assert len(listed) == 2
    assert len(run(("events", "show"), ["Ada"], EVENTS)) == 1
    assert len(run(("events", "aggregates"), [], ["aggregate", "version"])) == 2
    documents = run(
        ("knowledge", "list"), [], ["source", "chunks", "characters", "added", "sha256"]
    )
    assert [Path(d["source"]).name for d in documents] == ["manual.md"]
    assert seen == TABLE_COMMANDS - {("cluster", "status")}  # cluster status: the next test


def test_cluster_status_prints_plain_columns_and_json(tmp_path: Path, pg_server_uri: str) -> None:
    config = tmp_path / "cluster.yaml"

    async def body() -> tuple[str, str]:
        async with fresh_schema(pg_server_uri, "clusterstatus") as schema:
            url = schema_uri(pg_server_uri, schema)
            config.write_text(yaml.safe_dump({"cluster": {"postgres_url": url}}))
            loop = asyncio.get_running_loop()
            text = await loop.run_in_executor(None, piped, "cluster", "status", "-c", str(config))
            data = await loop.run_in_executor(
                None, piped, "cluster", "status", "--json", "-c", str(config)
            )
            return text, data

    text, data = asyncio.run(body())
    assert not BOX & set(text), text
    assert text.splitlines()[0].split()[:3] == ["id", "role", "alive"], text
    assert json.loads(data)["members"] == []
