"""`vlbench list tasks|matchers`."""

from __future__ import annotations

from enum import Enum

import typer


class Kind(str, Enum):
    tasks = "tasks"
    matchers = "matchers"


def list_entries(kind: Kind = typer.Argument(..., help="tasks or matchers")) -> None:
    """List registered tasks or matchers: name, origin (built-in or plugin distribution), summary.

    A plugin that fails to import is listed with its error; the others still work."""
    from rich.console import Console
    from rich.table import Table

    from vlbench import registry
    from vlbench.errors import VlbenchError

    chosen = registry.tasks if kind is Kind.tasks else registry.matchers
    table = Table()
    for column in ("name", "origin", "summary"):
        table.add_column(column)
    for name in chosen.names():
        entry = chosen.entry(name)
        try:
            summary = entry.load(chosen.kind).summary
        except VlbenchError as error:
            summary = f"[red]broken: {error}[/red]"
        table.add_row(name, entry.origin, summary)
    Console(width=200).print(table)
