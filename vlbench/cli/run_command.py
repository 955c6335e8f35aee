"""`vlbench run`: run a task with a matcher for one or more seeds."""

from __future__ import annotations

from pathlib import Path

import typer


def run(
    task: str = typer.Option(None, "--task", help="Task name (see `vlbench list tasks`)."),
    matcher: str = typer.Option(None, "--matcher", help="Matcher name (see `vlbench list matchers`)."),
    model: str = typer.Option(None, "--model", help="Model id or local path for model-based matchers."),
    data_root: Path = typer.Option(None, "--data-root", help="Dataset root (else $VLBENCH_DATA, else the config file)."),
    shots: str = typer.Option(None, "--shots", help="Few-shot training size: a fraction (0.05, 5%) or a count (16). Default 0."),
    seed: list[int] = typer.Option(None, "--seed", help="Seed; repeat for several runs (default 0)."),
    runs_dir: Path = typer.Option(None, "--runs-dir", help="Where run records go (default ./runs)."),
    config: Path = typer.Option(None, "--config", help="YAML file with any of the run keys; flags override it."),
    limit: int = typer.Option(None, "--limit", help="Evaluate a sample of N evaluation examples (drawn with the seed, kept in order)."),
    batch_size: int = typer.Option(None, "--batch-size", help="Examples per scoring call; never changes scores."),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    split: str = typer.Option(None, "--split", help="grouped (default) or paper-release (leaky; reproduction only)."),
    on_bad_example: str = typer.Option(None, "--on-bad-example", help="error (default) or skip: leave out examples whose images cannot be read, listed in results.json."),
    save_attention: bool = typer.Option(None, "--save-attention", help="Keep the attention maps behind each score in the run record (dsd), for `vlbench report`."),
    restart: bool = typer.Option(None, "--restart", help="Discard what the run stored (scores, trained state, results) and run it again."),
) -> None:
    """Run TASK with MATCHER; prints the metrics and the path of each results.json.

    Re-running the same command resumes: stored scores and trained state are reused, as long as
    the code, weights and data that made them are unchanged (else the run is refused; --restart
    discards them). Under `torchrun` or `accelerate launch` the examples are shared out among the
    processes. Ctrl-C or SIGTERM stops cleanly (exit 130) and the same command resumes."""
    from vlbench import distributed
    from vlbench.cli.display import print_results
    from vlbench.config import load_run_config
    from vlbench.runner import prepare
    from vlbench.runner import run as run_seed

    overrides = {
        "task": task, "matcher": matcher, "model": model, "data_root": str(data_root) if data_root else None,
        "shots": shots, "seeds": seed, "runs_dir": str(runs_dir) if runs_dir else None, "limit": limit,
        "batch_size": batch_size, "device": device, "split": split, "on_bad_example": on_bad_example, "save_attention": save_attention,
        "restart": restart,
    }
    run_config = load_run_config(config, overrides, flags=True)
    prepared = prepare(run_config)
    for each_seed in run_config.seeds:
        result = run_seed(prepared, each_seed)
        if distributed.current().is_main:
            print_results(result.record)
    distributed.leave()
