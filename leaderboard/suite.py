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
    """Run (or resume) every task × run entry × seed of the suite into `runs_dir`.

    An entry's own `seeds` replace the suite's (for matchers too slow to run three times)."""
    suite = build(Suite, read_yaml(suite_file), str(suite_file))
    configs = [load_run_config(None, {"seeds": suite.seeds, **entry, "task": task, "runs_dir": str(runs_dir)}) for task in suite.tasks for entry in suite.runs]
    with progress_bar("suite", total=sum(len(config.seeds) for config in configs)) as advance:
        for config in configs:
            prepared = prepare(config)
            for seed in config.seeds:
                run(prepared, seed)
                advance(1)
