"""Progress bars for loops that can take more than a few seconds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

run_label: ContextVar[str] = ContextVar("run_label", default="")  # the run a bar works for, in its description


@contextmanager
def labelled(label: str) -> Iterator[None]:
    """Bars opened inside name `label` (e.g. the run's task, matcher, shots and seed), so a log of
    many runs (a suite) says which one each bar belongs to."""
    token = run_label.set(label)
    try:
        yield
    finally:
        run_label.reset(token)


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr (rank 0's only, in a multi-process run); yields `advance(n)`."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from vlbench import distributed

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    ranks = distributed.current()
    if run_label.get():
        description += f" · {run_label.get()}"
    if ranks.distributed:
        description += f" (rank 0's share of {ranks.world_size})"
    with Progress(*columns, console=Console(stderr=True), transient=False, disable=not ranks.is_main) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
