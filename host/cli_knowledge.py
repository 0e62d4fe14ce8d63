"""``agenthost knowledge``: add, list and remove the documents agents answer from.

Mounted by host/cli.py as ``app.add_typer(knowledge_app, name="knowledge")``. Works on the
configured store with the host stopped or running (SQLite and PostgreSQL take concurrent
writers); needs the ``knowledge`` plugin.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar
from uuid import UUID

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from contracts.knowledge import KNOWLEDGE, AddOutcome, KnowledgeBase
from host.cli_output import print_table
from host.cli_progress import bars_by_name

__all__ = ["knowledge_app"]

T = TypeVar("T")

knowledge_app = typer.Typer(
    name="knowledge",
    help="Documents agents answer from: add (text, Markdown, PDF), list, remove.",
    no_args_is_help=True,
)
console = Console()

AgentOption = Annotated[
    str | None,
    typer.Option("--agent", "-a", help="The agent it belongs to (default: shared by every agent)."),
]


def _agent(name: str | None) -> UUID | None:
    """The id of the configured agent `name` names (None: shared); exit 2 naming the known
    agents if none: a document filed under a mistyped name is one no agent reads."""
    if name is None:
        return None
    from contracts.agent import CharacterError
    from host.agents import UnknownAgentError, character_for
    from host.characters import configured_characters
    from host.cli import _exit, _load
    from host.runtime import agent_id_for

    try:
        characters = configured_characters(_load().config.agents)
        return agent_id_for(character_for(characters, name).name)
    except (UnknownAgentError, CharacterError) as exc:
        raise _exit(f"--agent: {exc}", 2) from None


def _with_knowledge(body: Callable[[KnowledgeBase], Awaitable[T]]) -> T:
    """Load the plugins (no agents), check the store's vectors are the current model's, run
    `body` with the knowledge base."""
    from host.app import Host
    from host.cli import _exit, _load, _run
    from host.embeddings import check_embeddings

    loaded = _load()

    async def work() -> T:
        host = Host(loaded)
        await host.start(agents=False)
        try:
            if not host.container.has(KNOWLEDGE):
                raise _exit("the knowledge plugin is not loaded (plugins.enabled/disabled)", 2)
            await check_embeddings(host.container)
            return await body(await host.container.aresolve(KNOWLEDGE))
        finally:
            await host.stop()

    return _run(work)


@knowledge_app.command("add")
def add(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories (recursively).")],
    agent: AgentOption = None,
) -> None:
    """Add documents: text, Markdown and PDF files; a changed file replaces its earlier
    version, an unchanged one is skipped; a file that cannot be read is named and skipped."""

    owner = _agent(agent)

    async def body(knowledge: KnowledgeBase) -> list[AddOutcome]:
        with bars_by_name(console, lambda source: escape(Path(source).name)) as advance:
            return await knowledge.add_paths(paths, owner, advance)

    outcomes = _with_knowledge(body)
    colours = {"added": "green", "replaced": "green", "unchanged": "dim", "skipped": "yellow"}
    for outcome in outcomes:
        detail = f"{outcome.chunks} chunks" if outcome.status != "skipped" else outcome.reason
        console.print(
            f"[{colours[outcome.status]}]{outcome.status}[/] {escape(outcome.source)}:"
            f" {escape(str(detail))}",
            highlight=False,
            soft_wrap=True,
        )
    if outcomes and all(o.status == "skipped" for o in outcomes):
        raise typer.Exit(1)


@knowledge_app.command("list")
def list_documents(
    agent: AgentOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """The documents (of the agent, or the shared ones)."""

    owner = _agent(agent)

    async def body(knowledge: KnowledgeBase) -> list[dict[str, Any]]:
        return [
            {
                "source": d.source,
                "chunks": d.chunks,
                "characters": d.characters,
                "added": d.added_at,
                "sha256": d.sha256,
            }
            for d in await knowledge.documents(owner)
        ]

    rows = _with_knowledge(body)
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    table = Table(title=f"knowledge ({agent or 'shared'})")
    for column in ("source", "chunks", "characters", "added", "sha256"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            escape(row["source"]),
            str(row["chunks"]),
            str(row["characters"]),
            escape(row["added"]),
            row["sha256"][:12],
        )
    print_table(table, console)


@knowledge_app.command("remove")
def remove(
    source: Annotated[str, typer.Argument(help="The document's source (its path, as listed).")],
    agent: AgentOption = None,
) -> None:
    """Remove a document and its chunks."""
    path = Path(source)
    name = str(path.resolve()) if path.exists() else source

    owner = _agent(agent)

    async def body(knowledge: KnowledgeBase) -> bool:
        return await knowledge.remove(name, owner)

    if not _with_knowledge(body):
        from host.cli import _exit

        raise _exit(f"no document {name!r} in the knowledge base ({agent or 'shared'})", 1)
    console.print(f"removed {escape(name)}", soft_wrap=True)
