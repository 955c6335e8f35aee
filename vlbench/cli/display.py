"""Rich tables for the terminal."""

from __future__ import annotations

import typer

from vlbench.stored_runs import RunRecord


def print_results(record: RunRecord) -> None:
    """The metrics (overall and per tag) of one run, then where its results.json is."""
    from rich.console import Console
    from rich.table import Table

    protocol = record.protocol
    n = f"n={record.n}"
    if record.limited:
        n += f" of {protocol.n_eval} (a seeded sample, --limit)"
    table = Table(title=f"{record.task} · {record.matcher} · shots {protocol.shots} · seed {protocol.seed} · {n}")
    table.add_column("group")
    table.add_column("n", justify="right")
    names = list(record.metrics)
    for name in names:
        table.add_column(name, justify="right")
    table.add_row("all", str(record.n), *(f"{record.metrics[name] * 100:.2f}" for name in names))
    for tag, values in record.breakdown.items():
        for value, metrics in values.items():
            table.add_row(f"{tag}={value}", str(metrics["n"]), *(f"{metrics[name] * 100:.2f}" if name in metrics else "" for name in names))
    Console().print(table)
    # Plain lines, never wrapped at the terminal's width: scripts read the path from the last one.
    if protocol.dropped_for_shared_images:
        typer.echo(f"{protocol.dropped_for_shared_images} evaluation examples dropped for showing an image seen in training")
    timings = record.data["timings"]
    if timings["examples_resumed"]:
        typer.echo(f"resumed {timings['examples_resumed']} stored examples, scored {timings['examples_scored']}")
    typer.echo(f"results: {record.directory / 'results.json'}")
