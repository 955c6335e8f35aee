"""One benchmark run per seed: split, fit (if trainable and shots > 0), score, metrics, record.

Re-running the same configuration resumes: the split is checked against the stored one, trained
state is loaded instead of retrained, and only examples missing from `scores.jsonl` are scored.

Under `torchrun` / `accelerate launch` every rank draws the same split and trains on its share of
each batch (gradients summed over ranks); the examples left to score are dealt out by rank, each
rank appends to its own score shard, and rank 0 merges the shards by example id, computes the
metrics and writes `results.json`. Rank 0 alone holds the run's lock and writes its files.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlbench import distributed, registry
from vlbench.config import RunConfig
from vlbench.errors import VlbenchError
from vlbench.evaluation import load_images, score_examples
from vlbench.example_records import example_recorder
from vlbench.options import as_dict, build
from vlbench.provenance import provenance
from vlbench.records import RunDirectory, ScoredExample, write_atomically
from vlbench.runtime import Runtime, describe_device, resolve_device
from vlbench.splits import Split, make_split
from vlbench.training import TrainConfig
from vlbench.types import Example, Matcher, Task

SCHEMA_VERSION = 1


@dataclass
class Prepared:
    """A validated configuration with its task loaded, shared by all seeds."""

    config: RunConfig
    task: Task
    matcher_class: type[Matcher]
    matcher_options: Any
    train: TrainConfig | None
    device: str


@dataclass
class RunResult:
    run_dir: Path
    results: dict[str, Any]


def prepare(config: RunConfig) -> Prepared:
    """Resolve names and validate options; every error is a `VlbenchError`."""
    task_class = registry.tasks.get(config.task)
    matcher_class = registry.matchers.get(config.matcher)
    task_options = build(task_class.Options, config.task_options, "task_options")
    matcher_options = build(matcher_class.Options, config.matcher_options, "matcher_options")
    if config.model is not None and not matcher_class.uses_model:
        raise VlbenchError(f"--model {config.model}: matcher '{config.matcher}' takes no model")
    trains = matcher_class.trainable and not config.shots_parsed.is_zero
    train = build(TrainConfig, {**matcher_class.train_defaults, **config.train}, "train") if trains else None
    if config.save_attention and not matcher_class.records_attention:
        keeping = ", ".join(name for name in registry.matchers.names() if getattr(_loaded_or_none(name), "records_attention", False))
        raise VlbenchError(f"--save-attention: matcher '{config.matcher}' records no attention maps (those that do: {keeping or 'none'})")
    if config.train and not trains:
        raise VlbenchError(f"'train:' options given, but matcher '{config.matcher}' does not train with --shots {config.shots}")
    device = resolve_device(config.device)
    device = distributed.rank_device(device, distributed.join(device))
    task = task_class(task_options, Path(config.data_root) if config.data_root else None)
    return Prepared(config, task, matcher_class, matcher_options, train, device)


def run(prepared: Prepared, seed: int) -> RunResult:
    """Run (or resume) one seed and write its `results.json`."""
    config = prepared.config
    pool = prepared.task.examples(seed)
    train_pool = None if config.shots_parsed.is_zero else prepared.task.train_pool(seed)
    _check_ids(config.task, pool, "evaluation")
    if train_pool is not None:
        _check_ids(config.task, train_pool, "training")
    split = make_split(config.task, pool, train_pool, config.shots_parsed, seed, config.split)
    identity = run_identity(prepared)
    run_dir = RunDirectory(Path(config.runs_dir) / config.task / config.matcher / f"shots-{_path_label(split.shots)}-{config_id(identity)}" / f"seed-{seed}")
    ranks = distributed.current()
    with ExitStack() as held:
        def open_run() -> set[str]:
            held.enter_context(run_dir.lock())
            _write_or_check_split(run_dir, split)
            run_dir.write_text("config.yaml", _yaml({**identity, "seed": seed, "data_root": config.data_root, "batch_size": config.batch_size, "device": prepared.device}))
            run_dir.merge_shards()
            done = set(run_dir.read_scores())
            if config.save_attention:
                _check_attention_kept(run_dir, done)
            return done

        # Every rank must deal out the same pending list, so rank 0 reads what is done before any
        # rank starts appending.
        already = ranks.on_main(open_run)
        import torch

        torch.manual_seed(seed)
        runtime = Runtime(prepared.device, seed, config.batch_size, config.model, run_dir.path, config.task, config.save_attention)
        matcher = prepared.matcher_class(prepared.matcher_options, runtime)
        by_id = {example.id: example for example in (pool if train_pool is None else train_pool)}
        fit_seconds = _fit_or_load(matcher, run_dir, [by_id[i] for i in split.train_ids], prepared.train, ranks)
        evaluation_by_id = {example.id: example for example in pool}
        evaluation = [evaluation_by_id[i] for i in split.eval_ids][: config.limit]
        pending = [example for example in evaluation if example.id not in already]
        skipped: dict[str, str] = {}
        started = time.perf_counter()
        mine = ranks.shard(pending)
        if mine:
            shard = ranks.rank if ranks.distributed else None
            with run_dir.score_appender(shard) as append, example_recorder(run_dir, shard, matcher, config.thumbnails, config.save_attention) as record:
                skipped = score_examples(matcher, mine, config.batch_size, append, config.on_bad_example, config.image_workers, record)
        skipped = {example_id: error for part in ranks.gather(skipped) for example_id, error in part.items()}
        score_seconds = time.perf_counter() - started

        pairs_scored = sum(example.n_pairs for example in pending if example.id not in skipped)
        timings = {
            "fit_seconds": fit_seconds,
            "score_seconds": score_seconds,
            "examples_scored": len(pending) - len(skipped),
            "examples_resumed": len(evaluation) - len(pending),
            "pairs_per_second": pairs_scored / score_seconds if pending and score_seconds > 0 else None,
        }

        def finish() -> dict[str, Any]:
            scored = _merged_scores(run_dir, config.task, evaluation, skipped)
            results = _results_record(prepared, identity, split, matcher, scored, skipped, timings, ranks.world_size)
            run_dir.write_json("results.json", results)
            return results

        results = ranks.on_main(finish)
    return RunResult(run_dir.path, results)


def _check_attention_kept(run_dir: RunDirectory, done: set[str]) -> None:
    without = done - set(run_dir.read_lines("attention"))
    if without:
        raise VlbenchError(
            f"--save-attention: {run_dir.path} already holds scores of {len(without)} examples scored without "
            "keeping their maps, and finished examples are not scored again; use another --runs-dir"
        )


def _merged_scores(run_dir: RunDirectory, task: str, evaluation: list[Example], skipped: dict[str, str]) -> list[ScoredExample]:
    """The stored scores of the evaluation examples not skipped, after merging any rank shards."""
    run_dir.merge_shards()
    stored = run_dir.read_scores()
    unscored = [example.id for example in evaluation if example.id not in stored and example.id not in skipped]
    if unscored:
        raise VlbenchError(
            f"{len(unscored)} evaluation examples have no stored scores after merging the ranks' shards "
            f"(first: '{unscored[0]}'); with several nodes, --runs-dir must be on a filesystem all of them share"
        )
    scored = [stored[example.id] for example in evaluation if example.id not in skipped]
    if not scored:
        raise VlbenchError(f"every evaluation example of '{task}' was skipped as unreadable (first: {next(iter(skipped.items()))})")
    return scored


def _results_record(prepared: Prepared, identity: dict[str, Any], split: Split, matcher: Matcher, scored: list[ScoredExample], skipped: dict[str, str], timings: dict[str, Any], processes: int) -> dict[str, Any]:
    """The content of `results.json`."""
    config = prepared.config
    metrics, breakdown = compute_metrics(prepared.task, scored)
    return {
        "schema_version": SCHEMA_VERSION,
        "config_id": config_id(identity),
        "task": {"name": config.task, "version": prepared.task.version, "options": identity["task_options"]},
        "matcher": {"name": config.matcher, "fingerprint": matcher.fingerprint(), "trained": prepared.train is not None},
        "protocol": {**split.summary(), "limit": config.limit, "train": identity["train"]},
        "n": len(scored),
        "n_pairs": sum(len(item.scores) * len(item.scores[0]) for item in scored),
        "metrics": metrics,
        "breakdown": breakdown,
        "skipped": [{"id": example_id, "error": error} for example_id, error in skipped.items()],
        "timings": timings,
        "provenance": {
            **provenance(describe_device(prepared.device), matcher.library_versions()),
            "batch_size": config.batch_size,
            "processes": processes,
        },
    }


def compute_metrics(task: Task, scored: list[ScoredExample]) -> tuple[dict[str, float], dict[str, Any]]:
    """Aggregate metrics and per-tag breakdowns from stored score records."""
    from vlbench.metrics import aggregate

    outcomes = [task.outcomes(item.scores, item.positives) for item in scored]
    metrics, breakdown = aggregate(outcomes, [item.tags for item in scored])
    metrics.update(task.summarize({"metrics": metrics, "breakdown": breakdown}))
    return metrics, breakdown


def run_identity(prepared: Prepared) -> dict[str, Any]:
    """Everything that can change scores (batch size and device must not, so they are left out)."""
    config = prepared.config
    return {
        "task": config.task,
        "task_version": prepared.task.version,
        "task_options": as_dict(prepared.task.options),
        "matcher": config.matcher,
        "matcher_options": as_dict(prepared.matcher_options),
        "model": config.model,
        "shots": config.shots_parsed.label(),
        "split": config.split,
        "limit": config.limit,
        "train": as_dict(prepared.train) if prepared.train else None,
    }


def config_id(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]


def _fit_or_load(matcher: Matcher, run_dir: RunDirectory, train_examples: list[Example], train: TrainConfig | None, ranks: distributed.Ranks) -> float | None:
    if train is None:
        return None
    import torch

    if run_dir.state_path.exists():
        matcher.load_state_dict(torch.load(run_dir.state_path, map_location="cpu", weights_only=True))
        return None
    started = time.perf_counter()
    matcher.fit(train_examples, train, load_images)
    seconds = time.perf_counter() - started
    ranks.on_main(lambda: write_atomically(run_dir.state_path, lambda handle: torch.save(matcher.state_dict(), handle)))
    return seconds


def _write_or_check_split(run_dir: RunDirectory, split: Split) -> None:
    if run_dir.exists("split.json"):
        stored = run_dir.read_json("split.json")
        if stored.get("split_sha256") != split.sha256:
            raise VlbenchError(
                f"{run_dir.path / 'split.json'} holds a different split than this run draws: the "
                f"task's data changed since it was written. Use another --runs-dir or delete {run_dir.path}."
            )
        return
    run_dir.write_json("split.json", split.to_record())


def _check_ids(task: str, examples: list[Example], which: str) -> None:
    seen: set[str] = set()
    for example in examples:
        if example.id in seen:
            raise VlbenchError(f"task '{task}': duplicate example id '{example.id}' in the {which} examples")
        seen.add(example.id)
    if not examples:
        raise VlbenchError(f"task '{task}' has no {which} examples (check its data and options)")


def _loaded_or_none(name: str) -> Any:
    try:
        return registry.matchers.get(name)
    except VlbenchError:
        return None


def _path_label(shots: str) -> str:
    return shots.replace("%", "pct")


def _yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)
