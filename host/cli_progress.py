"""Progress on long CLI work (rich): a bar when the total is known, a spinner with the elapsed
time when it is not. Drawn on stderr, so stdout stays the command's output (``events export -``
pipes JSON Lines), and only when stderr is a terminal (``FORCE_COLOR`` forces it).

`bars_by_name` is the kept (not transient) display of ``knowledge add`` and ``memory reembed``:
one bar per named item (a file, a table), advanced by a ``(name, done, total)`` callback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["Advance", "bars_by_name", "progress"]

Advance = Callable[[str, int, int], None]
"""Reports progress on one named item: ``(name, done, total)``."""


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


@contextmanager
def bars_by_name(console: Console, label: Callable[[str], str]) -> Iterator[Advance]:
    """A progress display on `console` (kept when done) with one bar per name the yielded
    callback is called with, described by ``label(name)``."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def advance(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(label(name), total=total)
            bar.update(tasks[name], completed=done, total=total)

        yield advance
