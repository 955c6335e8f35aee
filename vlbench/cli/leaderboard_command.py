"""`vlbench leaderboard`: markdown tables from run records."""

from __future__ import annotations

from pathlib import Path

import typer


def leaderboard(
    runs: list[Path] = typer.Argument(None, help="Run directories or results.json files (default ./runs)."),
    out: Path = typer.Option(None, "--out", help="Write the markdown here instead of printing it."),
) -> None:
    """Per task: matcher × shots rows, each metric as mean ± 95% CI over seeds, best in bold."""
    from vlbench.leaderboard.tables import render_markdown
    from vlbench.records import atomic_write_text

    markdown = render_markdown(runs or [Path("runs")])
    if out:
        atomic_write_text(out, markdown)
        typer.echo(f"leaderboard: {out}")
    else:
        typer.echo(markdown)
