"""Progress on long CLI work (rich): a bar when the total is known, a spinner with the elapsed
time when it is not. Drawn on stderr, so stdout stays the command's output (``events export -``
pipes JSON Lines), and only when stderr is a terminal (``FORCE_COLOR`` forces it)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["progress"]


def progress(total: bool, console: Console | None = None) -> Progress:
    """A transient progress display on stderr: with a bar and the time left if `total` (the
    tasks added have totals), else a spinner and the time elapsed."""
    console = console or Console(stderr=True)
    columns = (
        [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
        if total
        else [SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()]
    )
    return Progress(*columns, console=console, transient=True, disable=not console.is_terminal)
