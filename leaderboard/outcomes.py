"""Per-example outcomes of stored runs (from `scores.jsonl`, through the task's `outcomes`), paired
across two matchers by example id (within the same seed, hence the same split)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlbench import registry
from vlbench.errors import VlbenchError
from vlbench.options import build
from vlbench.records import RunDirectory, ScoredExample


def example_outcomes(record: dict[str, Any], stored: dict[str, ScoredExample] | None = None) -> dict[str, dict[str, float]]:
    """Outcomes by example id of one run (its evaluation examples only), from `stored` when the
    caller has already read the run's scores."""
    path = Path(record["_path"])
    run_dir = RunDirectory(path.parent)
    if not run_dir.scores_path.exists():
        raise VlbenchError(f"{run_dir.scores_path} not found: the paired bootstrap needs each run's scores, not only results.json")
    task_class = registry.tasks.get(record["task"]["name"])
    task = task_class(build(task_class.Options, record["task"]["options"], f"{path} task.options"), None)
    split = run_dir.read_json("split.json")
    skipped = {item["id"] for item in record.get("skipped", [])}
    stored = run_dir.read_scores() if stored is None else stored
    evaluated = [example_id for example_id in split["eval_ids"][: record["protocol"]["limit"]] if example_id not in skipped]
    return {example_id: task.outcomes(stored[example_id].scores, stored[example_id].positives) for example_id in evaluated if example_id in stored}


def paired_outcomes(records: list[dict[str, Any]], baseline_records: list[dict[str, Any]]) -> tuple[str, list[float], list[float]]:
    """(metric, outcomes, baseline outcomes), one pair per example that both have under some
    seed, each side averaged over the seeds where both have it (so a zero-shot example scored
    under three seeds counts once); the metric is the task's first per-example outcome."""
    baseline_by_seed = {record["protocol"]["seed"]: record for record in baseline_records}
    pairs: dict[str, list[tuple[float, float]]] = {}
    metric = ""
    for record in sorted(records, key=lambda record: record["protocol"]["seed"]):
        other = baseline_by_seed.get(record["protocol"]["seed"])
        if other is None:
            continue
        mine, baseline = example_outcomes(record), example_outcomes(other)
        for example_id in sorted(mine.keys() & baseline.keys()):
            metric = metric or next(iter(mine[example_id]))
            pairs.setdefault(example_id, []).append((mine[example_id][metric], baseline[example_id][metric]))
    ours = [sum(a for a, _ in values) / len(values) for values in pairs.values()]
    theirs = [sum(b for _, b in values) / len(values) for values in pairs.values()]
    return metric, ours, theirs
