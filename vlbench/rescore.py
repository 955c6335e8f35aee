"""Recompute a run's metrics from its records alone: no model, no dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlbench import registry
from vlbench.options import build
from vlbench.stored_runs import StoredRun


def rescore(path: Path) -> dict[str, Any]:
    """Metrics from `scores.jsonl` for the run's evaluated examples; updates and returns results.json."""
    from vlbench.runner import compute_metrics

    stored = StoredRun(path)
    record = stored.record
    task_class = registry.tasks.get(record.task)
    task = task_class(build(task_class.Options, record.task_options, f"{path}/results.json task.options"), None)
    scored = stored.evaluated_scores()
    metrics, breakdown = compute_metrics(task, scored)
    results = {**record.data, "metrics": metrics, "breakdown": breakdown, "n": len(scored)}
    results["task"] = {**results["task"], "headline": task.headline_metric(metrics)}
    stored.files.write_json("results.json", results)
    return results
