"""`vlbench report RUNS_DIR... --html OUT_DIR`: a static site to look inside runs."""

from __future__ import annotations

from pathlib import Path

import typer


def report(
    runs: list[Path] = typer.Argument(None, help="Run directories or results.json files (default ./runs)."),
    html: Path = typer.Option(..., "--html", help="Directory to write the site into (index.html and one page per group of runs)."),
    baseline: str = typer.Option(None, "--baseline", help="Matcher to compare every row against (paired over examples: a bootstrap interval, a sign-flip p)."),
    references: bool = typer.Option(True, "--references/--no-references", help="Add the published numbers as reported rows."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Draw the accuracy-vs-shots and per-tag plots (needs matplotlib)."),
) -> None:
    """The leaderboard with its plots, and a per-example browser for every group of runs that
    evaluated the same split: thumbnails, texts, each run's scores and right/wrong marks, filters
    by tag and by "A right, B wrong", and the attention maps of runs made with --save-attention.
    Needs only the run directories; opens from disk."""
    from vlbench.leaderboard.report import write_report

    index = write_report(runs or [Path("runs")], html, baseline, references, plots)
    typer.echo(f"report: {index}")
