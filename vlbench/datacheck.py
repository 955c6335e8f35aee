"""`vlbench data check`: does a data root hold what a task reads?"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlbench.errors import VlbenchError
from vlbench.identity import image_files
from vlbench.types import Task


@dataclass
class DataReport:
    """Counts of what was found, and the problems (empty when the layout is complete)."""

    counts: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    bad_images: list[str] = field(default_factory=list)  # "path: what is wrong", the first few
    n_bad_images: int = 0


def check_data(task: Task, seed: int = 0, show: int = 10, workers: int = 8) -> DataReport:
    """Load the task's examples (evaluation and training), report what a run would refuse in them,
    and open every image file they reference and every image their data files embed (decoding
    each), in a bounded pool of threads: a missing file, a 0-byte file, a directory where a file
    should be and an undecodable file are each reported with its path."""
    report = DataReport()
    try:
        examples = task.examples(seed)
    except VlbenchError as error:
        report.problems.append(str(error))
        return report
    paths = sorted(image_files(examples))
    embedded = list({ref.key: ref for example in examples for ref in example.images if ref.path is None}.values())
    report.counts = {"examples": len(examples), "distinct image files": len(paths), **({"embedded images": len(embedded)} if embedded else {}), **task.statistics(examples)}
    _check_rules(report, task.name, examples, "evaluation")
    train_paths: list[Path] = []
    try:
        train_pool = task.train_pool(seed)
    except VlbenchError as error:
        report.problems.append(f"train split (few-shot runs draw from it; zero-shot runs do not read it): {error}")
    else:
        if train_pool is not None:
            _check_rules(report, task.name, train_pool, "training")
        report.counts["train examples"] = "none (few-shot examples are split off by image)" if train_pool is None else len(train_pool)
        train_paths = sorted(set(image_files(train_pool or [])) - set(paths))
        if train_pool is not None:
            report.counts["distinct training image files (besides the evaluation ones)"] = len(train_paths)
    tags: dict[str, Counter] = {}
    for example in examples:
        for tag, value in example.tags.items():
            tags.setdefault(tag, Counter())[value] += 1
    report.tags = {tag: dict(sorted(counter.items())) for tag, counter in sorted(tags.items())}
    with ThreadPoolExecutor(workers) as pool:
        bad = [problem for problem in pool.map(image_problem, paths) if problem]
        bad_embedded = [problem for problem in pool.map(embedded_problem, embedded) if problem]
        bad_training = [problem for problem in pool.map(image_problem, train_paths) if problem]
    if bad:
        report.problems.append(f"{len(bad)} of {len(paths)} image files cannot be used")
    if bad_embedded:
        report.problems.append(f"{len(bad_embedded)} of {len(embedded)} embedded images cannot be used")
    if bad_training:
        report.problems.append(f"{len(bad_training)} of {len(train_paths)} training image files cannot be used (few-shot runs train on them)")
    report.n_bad_images = len(bad) + len(bad_embedded) + len(bad_training)
    report.bad_images = [*bad, *bad_embedded, *bad_training][:show]
    return report


def _check_rules(report: DataReport, task: str, examples: list, which: str) -> None:
    """Report what a run would refuse in the examples: none, a repeated id, a blank text, a
    matching pair outside the matrix, … (`example_rules.check_examples`)."""
    from vlbench.example_rules import check_examples

    try:
        check_examples(task, examples, which)
    except VlbenchError as error:
        report.problems.append(str(error))


def image_problem(path: Path) -> str | None:
    """What is wrong with the image file at `path` ("path: reason"), or None if it decodes."""
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        return f"{path}: missing"
    if path.is_dir():
        return f"{path}: a directory, not an image file"
    if path.stat().st_size == 0:
        return f"{path}: empty (0 bytes)"
    try:
        with Image.open(path) as image:
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        return f"{path}: cannot be decoded ({error})"
    return None


def embedded_problem(ref) -> str | None:
    """What is wrong with an image held in the data files (an `ImageRef` without a path, e.g. in
    Winoground's parquet files) ("image 'key' (embedded): reason"), or None if it decodes."""
    try:
        ref.load()
    except (VlbenchError, OSError, SyntaxError, ValueError) as error:
        return f"image '{ref.key}' (embedded): cannot be decoded ({error})"
    return None


def missing_files(paths) -> str | None:
    """How many of `paths` are not files on disk, with the first (a `stat` each, nothing decoded;
    `check_data` says more), or None."""
    missing = sorted(path for path in paths if not Path(path).is_file())
    return f"{len(missing)} of {len(set(paths))} image files are missing, e.g. {missing[0]}" if missing else None
