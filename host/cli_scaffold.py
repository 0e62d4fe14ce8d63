"""``agenthost plugins new NAME``: registered by host/cli.py on the ``plugins`` group."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from host.scaffold import ScaffoldError, scaffold

__all__ = ["new_plugin"]

console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


def new_plugin(
    name: Annotated[str, typer.Argument(help="The plugin's name, e.g. 'weather'.")],
    directory: Annotated[
        Path, typer.Option("--dir", "-d", help="Where to create agenthost-NAME (default: .).")
    ] = Path("."),
) -> None:
    """Create a plugin package: pyproject with the entry point, a plugin with settings, a
    provider, an action and an event handler, a README and tests."""
    try:
        target, written = scaffold(name, directory)
    except ScaffoldError as exc:
        errors.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    except OSError as exc:
        errors.print(
            f"[red]error:[/] cannot write the package: {escape(str(exc))}", highlight=False
        )
        raise typer.Exit(1) from None
    console.print(f"created {escape(str(target))} ({len(written)} files):", highlight=False)
    for path in written:
        console.print(f"  {escape(str(path.relative_to(target)))}", highlight=False)
    console.print(
        "next:\n"
        f"  pip install -e {escape(str(target))}   # the host now loads plugin {name}\n"
        f"  cd {escape(str(target))} && pytest && ruff check . && mypy\n"
        "  agenthost plugins list",
        highlight=False,
    )
