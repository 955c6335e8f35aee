"""Recompute a run's metrics from its records alone: no model, no dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlbench import registry
from vlbench.errors import VlbenchError
from vlbench.options import build
from vlbench.records import RunDirectory


def rescore(path: Path) -> dict[str, Any]:
    """Metrics from `scores.jsonl` for the run's evaluation ids; updates and returns results.json."""
    run_dir = RunDirectory(path)
    results = run_dir.read_json("results.json")
    split = run_dir.read_json("split.json")
    task_class = registry.tasks.get(results["task"]["name"])
    task = task_class(build(task_class.Options, results["task"]["options"], f"{path}/results.json task.options"), None)
    skipped = {item["id"] for item in results.get("skipped", [])}
    evaluation_ids = [i for i in split["eval_ids"][: results["protocol"]["limit"]] if i not in skipped]
    stored = run_dir.read_scores()
    missing = [example_id for example_id in evaluation_ids if example_id not in stored]
    if missing:
        raise VlbenchError(f"{run_dir.scores_path} lacks {len(missing)} evaluation examples (first: '{missing[0]}'); re-run the run to finish it")
    from vlbench.runner import compute_metrics

    metrics, breakdown = compute_metrics(task, [stored[example_id] for example_id in evaluation_ids])
    results.update(metrics=metrics, breakdown=breakdown, n=len(evaluation_ids))
    run_dir.write_json("results.json", results)
    return results
