"""A suite: tasks × runs × seeds, defined as data, run through the ordinary runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlbench.config import load_run_config, read_yaml
from vlbench.options import build
from vlbench.progress import progress_bar
from vlbench.runner import prepare, run

DEFAULT_SUITE = Path(__file__).parent / "miniworld_suite.yaml"


@dataclass
class Suite:
    tasks: list[str]
    runs: list[dict[str, Any]]
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])


def run_suite(suite_file: Path, runs_dir: Path) -> None:
    """Run (or resume) every task × run entry × seed of the suite into `runs_dir`."""
    suite = build(Suite, read_yaml(suite_file), str(suite_file))
    jobs = [(task, entry) for task in suite.tasks for entry in suite.runs]
    with progress_bar("suite", total=len(jobs) * len(suite.seeds)) as advance:
        for task, entry in jobs:
            config = load_run_config(None, {**entry, "task": task, "seeds": suite.seeds, "runs_dir": str(runs_dir)})
            prepared = prepare(config)
            for seed in config.seeds:
                run(prepared, seed)
                advance(1)
