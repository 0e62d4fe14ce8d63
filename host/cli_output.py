"""How the CLI prints: global options placed anywhere on the line, and tables that are rich on a
terminal and plain columns when piped.

`HoistingGroup` is the root command's click group: ``agenthost run --log-level debug`` means
``agenthost --log-level debug run``. `print_table` prints a rich table on a terminal and, when
stdout is a pipe or a file, one line per row of space-aligned columns (no box, no title, no
wrapping) that ``grep``, ``awk`` and ``sort`` read.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.errors import MarkupError
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

__all__ = ["GLOBAL_OPTIONS", "HoistingGroup", "hoist", "plain", "print_table"]

GLOBAL_OPTIONS = frozenset({"--config", "-c", "--log-level"})
"""The root command's options that take a value and may also follow the subcommand."""


def hoist(args: Sequence[str], options: frozenset[str] = GLOBAL_OPTIONS) -> list[str]:
    """`args` with every global option (and its value) moved to the front, in order; what
    follows ``--`` is left alone."""
    front: list[str] = []
    rest: list[str] = []
    items = list(args)
    i = 0
    while i < len(items):
        arg = items[i]
        if arg == "--":
            rest += items[i:]
            break
        name = arg.split("=", 1)[0]
        if name in options and name.startswith("--") and "=" in arg:
            front.append(arg)
        elif arg in options and i + 1 < len(items):
            front += items[i : i + 2]
            i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


class HoistingGroup(TyperGroup):
    """The root group: global options are accepted after the subcommand too."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # click's Context (typer's copy)
        return super().parse_args(ctx, hoist(args))


def plain(table: Table) -> str:
    """The table as text: a header line, then one line per row, columns padded with spaces and
    separated by two; markup is dropped and newlines in a cell become spaces."""
    columns = [
        [_text(column.header), *(_text(cell) for cell in column.cells)] for column in table.columns
    ]
    if not columns:
        return ""
    widths = [max(map(len, column)) for column in columns]
    lines = []
    for row in zip(*columns, strict=True):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def _text(cell: object) -> str:
    if isinstance(cell, Text):
        text = cell.plain
    elif isinstance(cell, str):
        try:
            text = Text.from_markup(cell).plain
        except MarkupError:
            text = cell
    else:
        text = str(cell)
    return " ".join(text.split())


def print_table(table: Table, console: Console) -> None:
    """A rich table on a terminal, plain columns otherwise (see `plain`)."""
    if console.is_terminal:
        console.print(table)
    else:
        sys.stdout.write(plain(table))
        sys.stdout.flush()
