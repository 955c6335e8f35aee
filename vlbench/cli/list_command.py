"""`vlbench list tasks|matchers`."""

from __future__ import annotations

from enum import Enum

import typer


class Kind(str, Enum):
    tasks = "tasks"
    matchers = "matchers"


def list_entries(kind: Kind = typer.Argument(..., help="tasks or matchers")) -> None:
    """List registered tasks or matchers: name, origin (built-in or the plugin's distribution and
    version), summary. Summaries are read from the source, so listing imports no model library;
    an entry whose summary needs its module imported and fails is listed with its error."""
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
            summary = entry.summary(chosen.kind)
        except VlbenchError as error:
            summary = f"[red]broken: {error}[/red]"
        origin = entry.origin if entry.origin == "built-in" or entry.version is None else f"{entry.origin} {entry.version}"
        if entry.rivals:  # `run` refuses it; say so here rather than show one of the two
            origins = (origin, *entry.rivals)
            remedy = "rename the plugin's entry point or uninstall the plugin" if "built-in" in origins else "uninstall one of them"
            origin = " and ".join(origins)
            summary = f"[red]conflict: declared by both, so runs refuse the name; {remedy}.[/red] {summary}"
        table.add_row(name, origin, summary)
    Console(width=200).print(table)
