"""`vlbench leaderboard`: tables from run records (markdown, CSV or JSON), plots, paired comparisons."""

from __future__ import annotations

from pathlib import Path

import typer


def leaderboard(
    runs: list[Path] = typer.Argument(None, help="Run directories or results.json files (default ./runs)."),
    out: Path = typer.Option(None, "--out", help="Write the board here instead of printing it."),
    format: str = typer.Option("markdown", "--format", help="markdown, csv or json."),
    baseline: str = typer.Option(None, "--baseline", help="Matcher to compare every row against (paired over examples: a bootstrap interval, a sign-flip p)."),
    plots: Path = typer.Option(None, "--plots", help="Write PNG plots into this directory and link them (markdown; needs matplotlib)."),
    references: bool = typer.Option(True, "--references/--no-references", help="Add the published numbers as reported rows."),
) -> None:
    """Per task: matcher × shots rows, each metric as mean ± 95% CI over seeds, best in bold."""
    from vlbench.errors import VlbenchError
    from vlbench.leaderboard.publish import render_board
    from vlbench.records import atomic_write_text, writable_file

    if format not in ("markdown", "csv", "json"):
        raise VlbenchError(f"--format {format}: choose markdown, csv or json")
    if out is not None:
        writable_file(out, "--out")
    from vlbench.stored_runs import unfinished_runs

    text = render_board(runs or [Path("runs")], format, baseline, plots, references, out)
    unfinished = unfinished_runs(runs or [Path("runs")])
    if unfinished:
        typer.echo(f"not on the board: {len(unfinished)} unfinished run(s) (scores or training stored, no results.json), e.g. {unfinished[0]}; run their commands again to finish them", err=True)
    if out:
        atomic_write_text(out, text)
        typer.echo(f"leaderboard: {out}")
    else:
        typer.echo(text)
