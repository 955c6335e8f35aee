"""One benchmark run per seed: split, fit (if trainable and shots > 0), score, metrics, record.

Nothing is written before everything that can fail early has: options are validated when the
configuration is resolved (`prepare`), and the task's examples are read, the split drawn and the
matcher built (its model loaded and hashed) before the run directory is touched.

Re-running the same configuration resumes: the stored inputs (`identity.json`: code versions,
weights hash, data fingerprint) must match the current ones, trained state is loaded instead of
retrained (an interrupted training resumes from its last checkpoint, `vlbench.checkpoints`), and
only examples missing from `scores.jsonl` are scored. `--restart` discards a run's
stored records first.

Under `torchrun` / `accelerate launch` every rank draws the same split and trains on its share of
each batch (gradients summed over ranks); the examples left to score are dealt out by rank, each
rank appends to its own score shard, and rank 0 merges the shards by example id, computes the
metrics and writes `results.json`. Rank 0 alone holds the run's lock and writes its files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlbench import distributed, registry
from vlbench.checkpoints import TrainingCheckpoint, checkpointing
from vlbench.config import RunConfig, read_yaml
from vlbench.errors import Interrupted, VlbenchError, first_line
from vlbench.evaluation import RecentImages, prepared_images, score_examples
from vlbench.example_records import example_recorder
from vlbench.example_rules import check_examples
from vlbench.identity import RESTART_HINT, RunIdentity, changed_inputs, component_identity, files_fingerprint, first_changed_example, image_files, ranks_disagreement
from vlbench.metrics import compute_metrics
from vlbench.options import as_dict, build
from vlbench.provenance import run_code_sha256, scoring_libraries, session_record, sources_sha256
from vlbench.progress import labelled
from vlbench.records import RESULTS, RunDirectory, ScoredExample
from vlbench.runtime import Runtime, resolve_device
from vlbench.splits import LIMIT_SAMPLE, Split, check_protocol, evaluation_ids, make_split
from vlbench.stored_runs import SCHEMA_VERSION, RunRecord, StoredRun
from vlbench.training import TrainConfig
from vlbench.types import Example, Matcher, Task


@dataclass
class Prepared:
    """A validated configuration with its task built, shared by all seeds."""

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

    @property
    def record(self) -> RunRecord:
        return RunRecord.parse(self.results, self.run_dir)


def prepare(config: RunConfig) -> Prepared:
    """Resolve names and validate every option; every error is a `VlbenchError`. Writes nothing."""
    task_class = registry.tasks.get(config.task)
    matcher_class = registry.matchers.get(config.matcher)
    task_options = build(task_class.Options, config.task_options, "task_options")
    matcher_options = build(matcher_class.Options, config.matcher_options, "matcher_options")
    if config.model is not None and not matcher_class.uses_model:
        raise VlbenchError(f"--model {config.model}: matcher '{config.matcher}' takes no model")
    if config.model is None and matcher_class.default_model is not None:
        config = dataclasses.replace(config, model=matcher_class.default_model)  # the run named it: one configuration, one row
    trains = matcher_class.trainable and not config.shots_parsed.is_zero
    train = build(TrainConfig, {**matcher_class.train_defaults, **config.train}, "train") if trains else None
    if config.save_attention and not matcher_class.records_attention:
        raise VlbenchError(f"--save-attention: matcher '{config.matcher}' records no attention maps (those that do: {', '.join(_attention_matchers()) or 'none'})")
    if config.train and not trains:
        raise VlbenchError(f"'train:' options given, but matcher '{config.matcher}' does not train with --shots {config.shots}")
    _check_runs_dir(Path(config.runs_dir))
    device = resolve_device(config.device)
    device = distributed.rank_device(device, distributed.join(device))
    data_root = _data_root(config, task_class)
    if data_root is None and config.data_root:  # VLBENCH_DATA, unread: nothing records it
        config = dataclasses.replace(config, data_root=None)
    task = task_class(task_options, data_root)
    return Prepared(config, task, matcher_class, matcher_options, train, device)


def _data_root(config: RunConfig, task_class: type) -> Path | None:
    """The run's data root; None for a task that makes its own data, which refuses one given for
    this run and ignores `VLBENCH_DATA` (set for the other tasks)."""
    if not config.data_root:
        return None
    if task_class.reads_data_root:
        return Path(config.data_root)
    if config.data_root != os.environ.get("VLBENCH_DATA"):
        raise VlbenchError(f"--data-root {config.data_root}: task '{config.task}' makes its own data and reads no data root; drop --data-root (or data_root in --config)")
    return None


@dataclass(frozen=True)
class Fingerprints:
    """What `results.json` records of a run's data besides its data fingerprint: the fingerprint of
    the evaluation pool alone, and of the files its examples were drawn from (`Task.source_files`;
    None where the task names none)."""

    evaluation: str
    sources: str | None


@dataclass
class Drawn:
    """What a seed's run is made of: the task's examples, its split, and the examples it scores
    and trains on."""

    pool: list[Example]
    train_pool: list[Example] | None
    split: Split
    evaluation: list[Example]
    training: list[Example]


def draw(prepared: Prepared, seed: int) -> Drawn:
    """The examples of seed `seed`'s run, drawn as the run draws them (no model is loaded)."""
    config = prepared.config
    pool = prepared.task.examples(seed)
    train_pool = None if config.shots_parsed.is_zero else prepared.task.train_pool(seed)
    check_examples(config.task, pool, "evaluation")
    if train_pool is not None:
        check_examples(config.task, train_pool, "training")
    check_protocol(config.task, prepared.task.release_cut, train_pool is not None, config.shots_parsed, config.split)
    split = make_split(config.task, pool, train_pool, config.shots_parsed, seed, config.split)
    evaluation_by_id = {example.id: example for example in pool}
    evaluation = [evaluation_by_id[i] for i in evaluation_ids(split.eval_ids, config.limit, seed)]
    by_id = {example.id: example for example in (pool if train_pool is None else train_pool)}
    return Drawn(pool, train_pool, split, evaluation, [by_id[i] for i in split.train_ids])


def run(prepared: Prepared, seed: int) -> RunResult:
    """Run (or resume) one seed and write its `results.json`."""
    config = prepared.config
    with labelled(f"{config.task} · {config.matcher} · shots {config.shots_parsed.label()} · seed {seed}"):
        return _run(prepared, seed)


def _run(prepared: Prepared, seed: int) -> RunResult:
    config = prepared.config
    drawn = draw(prepared, seed)
    pool, train_pool, split, evaluation = drawn.pool, drawn.train_pool, drawn.split, drawn.evaluation
    run_dir = RunDirectory(run_path(prepared, seed))
    if config.limit is not None and config.limit >= len(split.eval_ids) and (config.restart or not run_dir.holds_records()):
        raise VlbenchError(
            f"--limit {config.limit}: seed {seed}'s split of {config.task} has {len(split.eval_ids)} evaluation examples, so the run would score all of them "
            "as a configuration of its own, apart from the same run without --limit; leave --limit out to score them all"
        )
    _refuse_missing_images(evaluation, drawn.training, skip=config.on_bad_example == "skip")
    import torch

    torch.manual_seed(seed)
    with failures_named(f"building matcher '{config.matcher}'", stored=False):
        matcher = prepared.matcher_class(prepared.matcher_options, Runtime(prepared.device, seed, config.model, config.save_attention))
    identity = run_identity(prepared, matcher_inputs(matcher), pool + (train_pool or []))
    ranks = distributed.current()
    _check_ranks_agree(ranks, identity, lambda: prepared.task.data_fingerprint(pool + (train_pool or [])))
    fingerprints = Fingerprints(
        evaluation=identity.inputs["task"]["data"] if train_pool is None else ranks.on_main(lambda: prepared.task.data_fingerprint(pool)),
        sources=ranks.on_main(lambda: files_fingerprint(prepared.task.source_files(pool, train_pool))),
    )
    with ExitStack() as held:
        def open_run() -> set[str]:
            held.enter_context(run_dir.lock())
            if config.restart:
                run_dir.discard_records()
            _open_or_check(run_dir, identity, split, config, seed, prepared.device, pool)
            run_dir.merge_shards()
            done = set(run_dir.read_scores())
            foreign = sorted(done - {example.id for example in evaluation})
            if foreign:
                raise VlbenchError(f"{run_dir.scores_path} holds scores of {len(foreign)} examples that are not among this run's evaluation examples (first: '{foreign[0]}'): scores of another run mixed in; {RESTART_HINT}")
            if config.save_attention:
                _check_attention_kept(run_dir, done)
            return done

        # Every rank must deal out the same pending list, so rank 0 reads what is done before any
        # rank starts appending.
        already = ranks.on_main(open_run)
        pending = [example for example in evaluation if example.id not in already]
        with _session_if_stopped(run_dir, prepared, matcher, ranks) as work:
            fit_seconds = _fit_or_load(matcher, run_dir, drawn.training, prepared.train, ranks, len(evaluation), work)
            skipped: dict[str, str] = {}
            started = work.scoring_started = time.perf_counter()
            mine = ranks.shard(pending)
            if mine:
                shard = ranks.rank if ranks.distributed else None
                with run_dir.score_appender(shard) as append, example_recorder(run_dir, shard, matcher, config.thumbnails, config.save_attention) as recorder:
                    def counted(scored: list[ScoredExample]) -> None:
                        append(scored)
                        work.examples_scored += len(scored)

                    try:
                        with failures_named("scoring"):
                            skipped = score_examples(matcher, mine, config.batch_size, counted, config.on_bad_example, config.image_workers, recorder.record, recorder.prepare)
                    except KeyboardInterrupt:
                        raise Interrupted(len(evaluation) - len(pending) + work.examples_scored, len(evaluation)) from None
            skipped = {example_id: error for part in ranks.gather(skipped) for example_id, error in part.items()}
        score_seconds = time.perf_counter() - started

        pairs_scored = sum(example.n_pairs for example in pending if example.id not in skipped)
        timings = {
            "fit_seconds": fit_seconds,
            "score_seconds": score_seconds,
            "examples_scored": len(pending) - len(skipped),
            "examples_resumed": len(evaluation) - len(pending),
            "pairs_per_second": pairs_scored / score_seconds if pending and score_seconds > 0 else None,
            "work": _summed(ranks.gather(matcher.work_done())),
        }

        def finish() -> dict[str, Any]:
            scored = _merged_scores(run_dir, config.task, evaluation, skipped)
            did_work = fit_seconds is not None or timings["examples_scored"]
            if not did_work and run_dir.exists(RESULTS):
                StoredRun(run_dir.path).check_metrics()  # scores edited since: not rewritten silently
            unrecorded = _unrecorded_work(run_dir, len(scored) - timings["examples_scored"], prepared.train is not None and fit_seconds is None)
            if did_work or unrecorded:
                run_dir.append_session({**session_record(prepared, matcher, ranks.world_size, timings), "ended": "completed", **unrecorded})
            results = _results_record(prepared, identity, fingerprints, split, matcher, scored, skipped, timings, run_dir.sessions())
            run_dir.write_json("results.json", results)
            return results

        results = ranks.on_main(finish)
    return RunResult(run_dir.path, results)


def _check_ranks_agree(ranks: distributed.Ranks, identity: RunIdentity, data_fingerprint) -> None:
    """Refuse a multi-process run whose processes compute from other inputs than rank 0, whose
    identity the run stores: weights, code or libraries of another node, or other data (hashed
    again by the first process of each node but rank 0's; `data_fingerprint()`)."""
    if not ranks.distributed:
        return
    import socket

    data, error = None, None
    if ranks.local_rank == 0 and not ranks.is_main:
        try:
            data = data_fingerprint()
        except Exception as failure:  # noqa: BLE001 - any: raised before the gather, it would leave the other ranks waiting in it
            error = f"rank {ranks.rank} (on {socket.gethostname()}) could not fingerprint its data: {first_line(failure) if not isinstance(failure, VlbenchError) else failure}"
    processes = ranks.gather({"rank": ranks.rank, "host": socket.gethostname(), "inputs": identity.inputs, "data": data, "error": error})
    problem = next((process["error"] for process in processes if process["error"]), None) or ranks_disagreement(processes)
    if problem is not None:
        raise VlbenchError(problem)


def run_path(prepared: Prepared, seed: int) -> Path:
    """The run directory of `seed`: named by the configuration alone, so it is known before any
    model or data is read."""
    config = prepared.config
    config_id = RunIdentity(run_configuration(prepared), {}).config_id
    return Path(config.runs_dir) / config.task / config.matcher / f"shots-{_path_label(config.shots_parsed.label())}-{config_id}" / f"seed-{seed}"


def matcher_inputs(matcher: Matcher) -> dict[str, Any]:
    """What a run's identity takes from its matcher: its fingerprint (weights, options) and the
    versions of the libraries its scores depend on."""
    return {"fingerprint": matcher.fingerprint(), "libraries": scoring_libraries(matcher)}


def run_identity(prepared: Prepared, matcher: dict[str, Any], examples: list[Example]) -> RunIdentity:
    """The run's configuration (names its directory) and inputs (checked on resume); `matcher`
    is `matcher_inputs` of the run's matcher."""
    config = prepared.config
    task = prepared.task
    data = distributed.current().on_main(lambda: task.data_fingerprint(examples))  # one process reads the images
    inputs = {
        "matcher": component_identity(config.matcher, prepared.matcher_class, registry.matchers.entry(config.matcher), fingerprint=matcher["fingerprint"]),
        "task": component_identity(config.task, type(task), registry.tasks.entry(config.task), data=data),
        "libraries": matcher["libraries"],
        "code": run_code_sha256(prepared.matcher_class, type(task)),
    }
    return RunIdentity(run_configuration(prepared), inputs)


def stored_run_change(prepared: Prepared, seed: int, matchers: dict[str, dict[str, Any]]) -> str | None:
    """For a run with stored records: what differs between the inputs they were computed from and
    today's, worded as a resume's refusal (without its hint); None when nothing does. Builds the run's matcher (which
    loads its model) unless `matchers` holds its `matcher_inputs` from an earlier check."""
    config = prepared.config
    drawn = draw(prepared, seed)
    key = json.dumps([config.matcher, as_dict(prepared.matcher_options), config.model, prepared.device], sort_keys=True, default=str)
    if key not in matchers:
        matchers[key] = matcher_inputs(prepared.matcher_class(prepared.matcher_options, Runtime(prepared.device, seed, config.model, False)))
    identity = run_identity(prepared, matchers[key], drawn.pool + (drawn.train_pool or []))
    return _stored_inputs_problem(RunDirectory(run_path(prepared, seed)), identity, drawn.split, config, seed, drawn.pool)


def _refuse_missing_images(evaluation: Sequence[Example], training: Sequence[Example], skip: bool) -> None:
    """Stop a run before anything is computed or stored when image files its examples show are
    missing: scoring would stop at the first of them, and the data fixed then would no longer be
    the data the stored scores were computed from (a resume refused). With `skip`
    (`--on-bad-example skip`), only when every evaluation example shows one: none would be left."""
    from vlbench.datacheck import missing_files

    fix = "put them in place (vlbench data check lists them all) and run again"
    missing = missing_files(image_files(training))
    if missing:
        raise VlbenchError(f"training examples: {missing}; {fix} (every training example is trained on, with --on-bad-example skip too). Nothing was stored")
    missing = missing_files(image_files(evaluation))
    if missing and not skip:
        raise VlbenchError(f"{missing}; {fix}, or pass --on-bad-example skip to leave their evaluation examples out. Nothing was stored")
    if missing and all(any(ref.path is not None and not Path(ref.path).is_file() for ref in example.images) for example in evaluation):
        raise VlbenchError(f"{missing}, and every evaluation example shows one, so --on-bad-example skip would leave none to score; {fix}. Nothing was stored")


def run_configuration(prepared: Prepared) -> dict[str, Any]:
    """What a run was asked to do; hashed into its `config_id`."""
    config = prepared.config
    return {
        "task": config.task,
        "task_options": as_dict(prepared.task.options),
        "matcher": config.matcher,
        "matcher_options": as_dict(prepared.matcher_options),
        "model": config.model,
        "shots": config.shots_parsed.label(),
        "split": config.split,
        "limit": config.limit,
        **({"limit_sample": LIMIT_SAMPLE} if config.limit is not None else {}),  # limited runs sampled otherwise before
        "train": as_dict(prepared.train) if prepared.train else None,
    }


def _open_or_check(run_dir: RunDirectory, identity: RunIdentity, split: Split, config: RunConfig, seed: int, device: str, examples: Sequence[Example]) -> None:
    """A new run gets its split, configuration and identity written; a run with stored records must
    have been made from the same inputs, or it is refused (and nothing of it is rewritten)."""
    if not run_dir.holds_records():
        run_dir.discard_records()  # lines an invocation stopped before its first score left (examples.jsonl is written first): of other inputs, maybe
        run_dir.write_json("split.json", split.to_record())
        run_dir.write_text("config.yaml", _yaml({**identity.config, "seed": seed, "data_root": config.data_root and str(Path(config.data_root).absolute()), "batch_size": config.batch_size, "device": device}))
        run_dir.write_json("identity.json", identity.to_record())
        return
    problem = _stored_inputs_problem(run_dir, identity, split, config, seed, examples)
    if problem is not None:
        raise VlbenchError(f"{problem}; {RESTART_HINT}")


def _stored_inputs_problem(run_dir: RunDirectory, identity: RunIdentity, split: Split, config: RunConfig, seed: int, examples: Sequence[Example]) -> str | None:
    """Why the records in `run_dir` do not belong to seed `seed`'s run of `identity` and `split`
    (without what to do about it: that depends on the caller), or None. `examples`: the run's
    pool, to say where changed data differs from the stored records."""
    if not run_dir.exists("identity.json"):
        return f"{run_dir.path} holds scores stored without a record of their inputs (an older vlbench)"
    record = run_dir.read_json("identity.json")
    stored_seed = read_yaml(run_dir.path / "config.yaml").get("seed") if run_dir.exists("config.yaml") else seed
    if (record.get("config_id"), stored_seed) != (identity.config_id, seed):
        return f"{run_dir.path} holds the records of another run (configuration {record.get('config_id')}, seed {stored_seed}), not of this one (configuration {identity.config_id}, seed {seed}), as if copied or moved here"
    stored = record.get("inputs", {})
    if "libraries" not in stored:  # stored before identities named them: each session recorded them
        recorded = {json.dumps(session.get("libraries"), sort_keys=True) for session in run_dir.sessions()}
        stored = {**stored, "libraries": json.loads(recorded.pop())} if len(recorded) == 1 else stored
    change = changed_inputs(stored, identity.inputs, config.model, lambda: first_changed_example(run_dir.read_lines("examples"), run_dir.read_scores(), examples))
    if change is not None:
        return f"{change}, in {run_dir.path}"
    if run_dir.exists("split.json") and run_dir.read_json("split.json").get("split_sha256") != split.sha256:
        return f"{run_dir.path} holds scores of a different split than this run draws (the task's data, or how splits are drawn, changed)"
    return None


def _check_attention_kept(run_dir: RunDirectory, done: set[str]) -> None:
    without = done - set(run_dir.read_lines("attention"))
    if without:
        raise VlbenchError(
            f"--save-attention: {run_dir.path} already holds scores of {len(without)} examples scored without "
            "keeping their maps, and finished examples are not scored again; use another --runs-dir, or --restart"
        )


def _unrecorded_work(run_dir: RunDirectory, examples_stored_before: int, trained_before: bool) -> dict[str, Any]:
    """What the run stored before this invocation that no line of `sessions.jsonl` accounts for
    (an invocation killed outright records nothing, nor did one stopped under vlbench 0.2.0 and
    earlier): `{"unrecorded": {"examples": N, "training": True}}`, or nothing."""
    sessions = run_dir.sessions()
    recorded = sum((session.get("examples_scored") or 0) + session.get("unrecorded", {}).get("examples", 0) for session in sessions)
    examples = examples_stored_before - recorded
    training = trained_before and run_dir.state_path.exists() and not any(session.get("trained") or session.get("unrecorded", {}).get("training") for session in sessions)
    unrecorded = {**({"examples": examples} if examples > 0 else {}), **({"training": True} if training else {})}
    return {"unrecorded": unrecorded} if unrecorded else {}


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


def _results_record(prepared: Prepared, identity: RunIdentity, data: Fingerprints, split: Split, matcher: Matcher, scored: list[ScoredExample], skipped: dict[str, str], timings: dict[str, Any], sessions: list[dict[str, Any]]) -> dict[str, Any]:
    """The content of `results.json` (schema in the README)."""
    config = prepared.config
    task = prepared.task
    metrics, breakdown = compute_metrics(task, scored)
    inputs = identity.inputs
    return {
        "schema_version": SCHEMA_VERSION,
        "config_id": identity.config_id,
        "task": {
            **_component(inputs["task"]),
            "options": identity.config["task_options"],
            "headline": task.headline_metric(metrics),
            "data_fingerprint": inputs["task"]["data"],
            "evaluation_fingerprint": data.evaluation,
            "examples_vary_by_seed": task.examples_vary_by_seed,
            **({"source_fingerprint": data.sources} if data.sources else {}),
        },
        "matcher": {**_component(inputs["matcher"]), "fingerprint": inputs["matcher"]["fingerprint"], "trained": prepared.train is not None},
        "code": {"sources_sha256": sources_sha256(inputs["code"])},
        "protocol": {**split.summary(), "limit": config.limit, "limit_sample": identity.config.get("limit_sample"), "train": identity.config["train"]},
        "n": len(scored),
        "n_pairs": sum(len(item.scores) * len(item.scores[0]) for item in scored),
        "metrics": metrics,
        "breakdown": breakdown,
        "skipped": [{"id": example_id, "error": error} for example_id, error in skipped.items()],
        "timings": timings,
        "provenance": {"sessions": sessions},
    }


def _component(identity: dict[str, Any]) -> dict[str, Any]:
    return {key: identity[key] for key in ("name", "version", "distribution", "distribution_version")}


def _fit_or_load(matcher: Matcher, run_dir: RunDirectory, train_examples: list[Example], train: TrainConfig | None, ranks: distributed.Ranks, n_evaluation: int, work: WorkStored) -> float | None:
    """Train (resuming from a training checkpoint if there is one) and store the trained state, or
    load the state stored before; the seconds spent training, or None. What training stored goes
    into `work` as it is stored."""
    if train is None:
        return None
    if run_dir.state_path.exists():
        state = run_dir.load_state()
        try:
            matcher.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError) as error:
            raise VlbenchError(
                f"{run_dir.state_path}: the stored trained state does not fit matcher '{matcher.name}' ({' '.join(str(error).split())[:300] or type(error).__name__}): other code of the same version stored it; "
                "bump the matcher's version when its trained state changes (such runs are then refused), or --restart to train again"
            ) from error
        return None
    started = time.perf_counter()
    recent = RecentImages()  # each epoch shows the same images
    checkpoint = TrainingCheckpoint(run_dir.checkpoint_path, run_dir.state_owner())

    def training_images(example: Example) -> list:
        try:
            return prepared_images(example, recent, matcher.prepare_images)
        except VlbenchError as error:
            raise VlbenchError(f"training {error} (--on-bad-example skip leaves out evaluation examples only: the split's training examples are all trained on)") from None

    finished = False
    try:
        with checkpointing(checkpoint), failures_named("training"):
            matcher.fit(train_examples, train, training_images)
        finished = True
    except KeyboardInterrupt:
        raise Interrupted(0, n_evaluation, epochs=(checkpoint.epochs_kept, train.epochs)) from None
    finally:
        if not finished and checkpoint.epochs_kept > checkpoint.epochs_restored:
            work.epochs_checkpointed = checkpoint.epochs_kept
    seconds = time.perf_counter() - started
    ranks.on_main(lambda: run_dir.store_state(matcher.state_dict()))
    ranks.on_main(checkpoint.discard)
    work.fit_seconds = seconds
    return seconds


@contextmanager
def failures_named(doing: str, stored: bool = True) -> Iterator[None]:
    """An unexpected exception while `doing` (a matcher's own error, a full disk) becomes a
    `VlbenchError` with its first line and the innermost frame outside torch where it was raised,
    so the command line prints one line and says whether the run resumes; `--debug` shows the
    traceback. Ctrl-C passes through."""
    try:
        yield
    except (VlbenchError, Interrupted):
        raise
    except Exception as error:
        import torch

        library = Path(torch.__file__).parent
        frames = [frame for frame in traceback.extract_tb(error.__traceback__) if not Path(frame.filename).is_relative_to(library)]
        where = f" (raised at {Path(frames[-1].filename).name}:{frames[-1].lineno}, in {frames[-1].name})" if frames else ""
        after = "what the run stored is kept: the same command resumes once the cause is fixed" if stored else "the same command works once the cause is fixed"
        raise VlbenchError(f"{doing} failed: {type(error).__name__}: {first_line(error)}{where}; {after} (--debug shows the traceback)") from error


@dataclass
class WorkStored:
    """What one invocation of a run stored so far (by this process): the line it leaves in
    `sessions.jsonl` if it stops before the end."""

    fit_seconds: float | None = None  # training finished and its state was stored
    epochs_checkpointed: int | None = None  # training stopped with this many epochs in the checkpoint
    examples_scored: int = 0
    scoring_started: float | None = None


@contextmanager
def _session_if_stopped(run_dir: RunDirectory, prepared: Prepared, matcher: Matcher, ranks: distributed.Ranks) -> Iterator[WorkStored]:
    """Yields the invocation's `WorkStored`; if anything (an error, Ctrl-C, SIGTERM) stops it after
    it stored work, appends its session line, `ended` saying how it stopped, so the run's
    provenance names every invocation whose work it keeps. Each process of a multi-process run
    appends its own line (with its `rank`, to its own file): a stopped process cannot count the
    others' work. A process killed outright (SIGKILL) leaves no line; the invocation completing
    the run records its work as `unrecorded`."""
    work = WorkStored()
    try:
        yield work
    except BaseException as error:
        if work.fit_seconds is not None or work.epochs_checkpointed or work.examples_scored:
            try:
                run_dir.append_session(_stopped_session(work, error, prepared, matcher, ranks), ranks.rank if ranks.distributed else None)
            except BaseException as secondary:  # a second Ctrl-C, a full disk: the first error is the one to report
                if not isinstance(secondary, KeyboardInterrupt):
                    print(f"warning: the session line of this stopped invocation could not be written ({type(secondary).__name__}: {secondary})", file=sys.stderr)
        raise


def _stopped_session(work: WorkStored, error: BaseException, prepared: Prepared, matcher: Matcher, ranks: distributed.Ranks) -> dict[str, Any]:
    """The session line of an invocation stopped by `error` after it stored `work`."""
    started = work.scoring_started
    timings = {
        "fit_seconds": work.fit_seconds,
        "score_seconds": None if started is None else time.perf_counter() - started,
        "examples_scored": work.examples_scored,
        "pairs_per_second": None,
        "work": matcher.work_done(),
    }
    ended = "interrupted" if isinstance(error, (KeyboardInterrupt, Interrupted)) else f"failed: {type(error).__name__}: {first_line(error)}"
    session = {**session_record(prepared, matcher, ranks.world_size, timings), "ended": ended}
    if work.epochs_checkpointed:
        session["training_epochs_checkpointed"] = work.epochs_checkpointed
    if ranks.distributed:
        session["rank"] = ranks.rank
    return session


def _check_runs_dir(runs_dir: Path) -> None:
    """A runs directory that cannot hold runs is refused before any work."""
    from vlbench.records import writable_directory

    problem = writable_directory(runs_dir)
    if problem:
        raise VlbenchError(f"--runs-dir {runs_dir}: {problem}")


def _attention_matchers() -> list[str]:
    names = []
    for name in registry.matchers.names():
        try:
            if registry.matchers.get(name).records_attention:
                names.append(name)
        except VlbenchError:
            pass
    return names


def _path_label(shots: str) -> str:
    return shots.replace("%", "pct")


def _yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def _summed(counts: list[dict[str, int]]) -> dict[str, int]:
    """Each rank's counts of `Matcher.work_done`, added up by name."""
    total: dict[str, int] = {}
    for part in counts:
        for name, count in part.items():
            total[name] = total.get(name, 0) + count
    return total
