"""`vlbench score RUN_DIR`: recompute metrics from stored scores, without model or data."""

from __future__ import annotations

from pathlib import Path

import typer


def score(run_dir: Path = typer.Argument(..., help="A run directory (holds results.json and scores.jsonl).")) -> None:
    """Recompute a run's metrics from its stored per-example scores and update its results.json."""
    from vlbench.cli.display import print_results
    from vlbench.rescore import rescore

    results = rescore(run_dir)
    print_results(results, run_dir / "results.json")
