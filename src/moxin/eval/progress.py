"""A rich progress bar with rate and ETA for the long evaluation loops."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class _Bar:
    def __init__(self, progress, task) -> None:
        self._p, self._t = progress, task

    def advance(self, n: int) -> None:
        self._p.advance(self._t, n)


@contextlib.contextmanager
def progress_bar(total: int, what: str) -> Iterator[_Bar]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed:7.1f} items/s" if task.speed else "      ? items/s")

    cols = [
        TextColumn(f"[bold]{what}"),
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    with Progress(*cols, transient=False) as progress:
        task = progress.add_task(what, total=total)
        yield _Bar(progress, task)
