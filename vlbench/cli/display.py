"""Rich tables for the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def print_results(results: dict[str, Any], path: Path) -> None:
    """The metrics (overall and per tag) of one run, then where its results.json is."""
    from rich.console import Console
    from rich.table import Table

    protocol = results["protocol"]
    title = f"{results['task']['name']} · {results['matcher']['name']} · shots {protocol['shots']} · seed {protocol['seed']} · n={results['n']}"
    table = Table(title=title)
    table.add_column("group")
    table.add_column("n", justify="right")
    names = list(results["metrics"])
    for name in names:
        table.add_column(name, justify="right")
    table.add_row("all", str(results["n"]), *(f"{results['metrics'][name] * 100:.2f}" for name in names))
    for tag, values in results["breakdown"].items():
        for value, metrics in values.items():
            table.add_row(f"{tag}={value}", str(metrics["n"]), *(f"{metrics[name] * 100:.2f}" if name in metrics else "" for name in names))
    console = Console()
    console.print(table)
    timings = results["timings"]
    if timings["examples_resumed"]:
        console.print(f"resumed {timings['examples_resumed']} stored examples, scored {timings['examples_scored']}")
    console.print(f"results: {path}")
