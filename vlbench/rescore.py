"""Recompute a run's metrics from its records alone: no model, no dataset."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vlbench.errors import VlbenchError
from vlbench.metrics import compute_metrics
from vlbench.provenance import checkout_state
from vlbench.stored_runs import StoredRun
from vlbench.version import __version__


def rescore(path: Path) -> dict[str, Any]:
    """Metrics from `scores.jsonl` for the run's evaluated examples; updates and returns results.json.
    Numbers it replaces are kept in its `rescored` list, with when and by which code; refused where
    they would change and today's code is not the code that stored the run."""
    stored = StoredRun(path)
    stored.check_records()
    scored = stored.evaluated_scores()
    metrics, breakdown = compute_metrics(stored.task, scored)
    recorded = stored.record.data
    results = {**recorded, "metrics": metrics, "breakdown": breakdown, "n": len(scored)}
    results["task"] = {**results["task"], "headline": stored.task.headline_metric(metrics)}
    replaced = {name: recorded.get(name) for name in ("n", "metrics", "breakdown") if recorded.get(name) != results[name]}
    changed = stored.changed_code() if replaced else ""
    if changed:
        raise VlbenchError(
            f"{path}: today's code gives other numbers than the run records, and differs from the code that stored it ({changed}): "
            "the rewritten numbers would be another code's under the stored code's name; re-run the run with --restart, or rescore it with the vlbench that stored it"
        )
    if replaced:
        commit, dirty = checkout_state()
        entry = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "vlbench_version": __version__, "git_commit": commit, "git_dirty": dirty, "replaced": replaced}
        results["rescored"] = [*recorded.get("rescored", []), entry]
    stored.files.write_json("results.json", results)
    return results
