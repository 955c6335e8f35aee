"""The Python API: what `vlbench run` does, from a notebook or a script.

    import vlbench

    result = vlbench.evaluate(task="mini-comvg", matcher="clip", model="mini", seeds=[0, 1])
    result.metrics          # {seed: {"average": …, "accuracy": …}}
    result.mean("average")  # (mean, 95% CI half-width) over seeds

    matcher = vlbench.create_matcher("clip", model="mini")
    task = vlbench.create_task("mini-comvg")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlbench.errors import VlbenchError


@dataclass(frozen=True)
class SeedResult:
    """One seed's run: its directory and its `results.json` (metrics, breakdown, provenance)."""

    seed: int
    run_dir: Path
    results: dict[str, Any]

    @property
    def metrics(self) -> dict[str, float]:
        return self.results["metrics"]

    @property
    def breakdown(self) -> dict[str, Any]:
        return self.results["breakdown"]


@dataclass(frozen=True)
class Evaluation:
    """The runs of one `evaluate` call, one per seed."""

    runs: list[SeedResult]

    @property
    def metrics(self) -> dict[int, dict[str, float]]:
        """Per seed, each metric (a fraction)."""
        return {run.seed: run.metrics for run in self.runs}

    @property
    def run_dirs(self) -> dict[int, Path]:
        return {run.seed: run.run_dir for run in self.runs}

    def mean(self, metric: str) -> tuple[float, float | None]:
        """The metric's mean over seeds and the half-width of its 95% Student-t interval (None for
        one seed), as the leaderboard computes them."""
        from vlbench.stats import mean_and_ci

        return mean_and_ci([run.metrics[metric] for run in self.runs])


def evaluate(task: str, matcher: str, *, model: str | None = None, shots: str | int | float = 0, seeds=(0,), **options: Any) -> Evaluation:
    """Run (or resume) `matcher` on `task` for each seed, exactly as `vlbench run` does.

    `options` are the other run keys of the README (`data_root`, `runs_dir`, `limit`,
    `batch_size`, `device`, `task_options`, `matcher_options`, `train`, `split`, `restart`, …);
    an unknown key is an error that lists the allowed ones."""
    from vlbench import distributed
    from vlbench.config import RunConfig, resolve_data_root
    from vlbench.options import build
    from vlbench.runner import prepare, run

    values = {"task": task, "matcher": matcher, "model": model, "shots": str(shots), "seeds": list(seeds), **options}
    values["data_root"] = resolve_data_root(options.get("data_root") and str(options["data_root"]), None)
    if "runs_dir" in values:
        values["runs_dir"] = str(values["runs_dir"])
    config = build(RunConfig, values, "vlbench.evaluate")
    prepared = prepare(config)
    runs = []
    for seed in config.seeds:
        result = run(prepared, seed)
        runs.append(SeedResult(seed, result.run_dir, result.results))
    distributed.leave()  # not after an error: a rank that failed alone would wait at the barrier forever
    return Evaluation(runs)


def create_task(name: str, data_root: str | Path | None = None, **options: Any):
    """The task `name` with its options (`data_root` falls back to `VLBENCH_DATA`)."""
    from vlbench import registry
    from vlbench.config import resolve_data_root
    from vlbench.options import build

    task_class = registry.tasks.get(name)
    root = resolve_data_root(str(data_root) if data_root is not None else None, None)
    return task_class(build(task_class.Options, options, f"task '{name}' options"), Path(root) if root else None)


def create_matcher(name: str, model: str | None = None, *, device: str = "auto", seed: int = 0, save_attention: bool = False, **options: Any):
    """The matcher `name` (its model loaded), ready to `score(images, texts)`; `options` are its
    `matcher_options`."""
    from vlbench import registry
    from vlbench.options import build
    from vlbench.runtime import Runtime, resolve_device

    matcher_class = registry.matchers.get(name)
    if model is not None and not matcher_class.uses_model:
        raise VlbenchError(f"model {model}: matcher '{name}' takes no model")
    matcher_options = build(matcher_class.Options, options, f"matcher '{name}' options")
    return matcher_class(matcher_options, Runtime(resolve_device(device), seed, model, save_attention))
