"""`vlbench data check`: does a data root hold what a task reads?"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from vlbench.errors import VlbenchError
from vlbench.types import Task


@dataclass
class DataReport:
    """Counts of what was found, and the problems (empty when the layout is complete)."""

    counts: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    missing_images: list[str] = field(default_factory=list)
    n_missing_images: int = 0


def check_data(task: Task, seed: int = 0, show_missing: int = 10) -> DataReport:
    """Load the task's examples and check every image file they reference exists."""
    report = DataReport()
    try:
        examples = task.examples(seed)
    except VlbenchError as error:
        report.problems.append(str(error))
        return report
    paths = {ref.path for example in examples for ref in example.images if ref.path is not None}
    missing = sorted(str(path) for path in paths if not path.exists())
    report.counts = {"examples": len(examples), "distinct image files": len(paths), **task.statistics(examples)}
    try:
        train_pool = task.train_pool(seed)
    except VlbenchError as error:
        report.problems.append(f"train split: {error}")
    else:
        report.counts["train examples"] = "none (few-shot examples are split off by image)" if train_pool is None else len(train_pool)
    tags: dict[str, Counter] = {}
    for example in examples:
        for tag, value in example.tags.items():
            tags.setdefault(tag, Counter())[value] += 1
    report.tags = {tag: dict(sorted(counter.items())) for tag, counter in sorted(tags.items())}
    if missing:
        report.n_missing_images = len(missing)
        report.missing_images = missing[:show_missing]
        report.problems.append(f"{len(missing)} of {len(paths)} image files are missing")
    return report
