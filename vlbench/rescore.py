"""Recompute a run's metrics from its records alone: no model, no dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlbench.metrics import compute_metrics
from vlbench.stored_runs import StoredRun


def rescore(path: Path) -> dict[str, Any]:
    """Metrics from `scores.jsonl` for the run's evaluated examples; updates and returns results.json."""
    stored = StoredRun(path)
    scored = stored.evaluated_scores()
    metrics, breakdown = compute_metrics(stored.task, scored)
    results = {**stored.record.data, "metrics": metrics, "breakdown": breakdown, "n": len(scored)}
    results["task"] = {**results["task"], "headline": stored.task.headline_metric(metrics)}
    stored.files.write_json("results.json", results)
    return results
