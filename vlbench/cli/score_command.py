"""`vlbench score RUN_DIR`: recompute metrics from stored scores, without model or data."""

from __future__ import annotations

from pathlib import Path

import typer


def score(run_dir: Path = typer.Argument(..., help="A run directory (holds results.json and scores.jsonl).")) -> None:
    """Recompute a run's metrics from its stored per-example scores and update its results.json."""
    from vlbench.cli.display import print_results
    from vlbench.rescore import rescore
    from vlbench.stored_runs import RunRecord

    print_results(RunRecord.parse(rescore(run_dir), run_dir))
