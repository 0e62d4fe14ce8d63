"""``agenthost memory``: maintenance of the memory store (``reembed``).

Mounted by host/cli.py as ``app.add_typer(memory_app, name="memory")``.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from contracts.models import MODELS
from contracts.storage import DATABASE
from host.cli_progress import bars_by_name

__all__ = ["memory_app"]

memory_app = typer.Typer(
    name="memory", help="The memory store: re-embed it with a new model.", no_args_is_help=True
)
console = Console()


@memory_app.command("reembed")
def reembed_command(
    table: Annotated[
        list[str] | None,
        typer.Option("--table", "-t", help="Only this memory table (repeatable)."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=4096, help="Memories per model call.")
    ] = 32,
) -> None:
    """Re-embed the stored memories with the embedding model configured now.

    Run it with the host stopped, after changing the embedding model (installing or removing
    an embeddings extra, pinning another text_embedding provider). Interrupted, it continues
    where it stopped when run again."""
    from host.app import Host
    from host.cli import _load, _run
    from host.reembed import TableResult, reembed

    loaded = _load()

    async def work() -> tuple[str, list[TableResult]]:
        host = Host(loaded)
        await host.start(agents=False)
        try:
            db = await host.container.aresolve(DATABASE)
            models = await host.container.aresolve(MODELS)
            with bars_by_name(console, lambda name: f"table {name}") as advance:
                current, results = await reembed(
                    db, models, tables=table or None, batch_size=batch_size, progress=advance
                )
            return str(current), results
        finally:
            await host.stop()

    model, results = _run(work)
    for result in results:
        if result.skipped:
            console.print(f"{result.table}: already {model}, nothing to do")
        else:
            how = "resumed, " if result.resumed else ""
            console.print(f"{result.table}: {how}{result.embedded} memories embedded with {model}")
