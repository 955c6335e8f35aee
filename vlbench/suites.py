"""Suites: many runs defined as data (tasks × run entries × seeds), planned offline, run one after
another or in parallel processes, and reported as one board.

A suite file:

    seeds: [0, 1, 2]
    tasks:                                  # names, or entries with their own options and data
      - comvg
      - {task: refcocog, task_options: {eval_split: test}, data_root: refcocog}
    runs:                                   # any `vlbench run` keys; `tasks:` restricts an entry
      - {matcher: clip, model: "ViT-B-16:openai"}
      - {matcher: dsd-release, shots: 5%, matcher_options: {sampling_steps: 40}, tasks: [comvg]}

A task entry's `data_root` is relative to the data directory given to the command (default: the
working directory); an entry's `seeds` replace the suite's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlbench.cluster import ClusterOptions, first_error_line, run_array, vlbench_command
from vlbench.compute import Work, run_work
from vlbench.config import RunConfig, load_run_config, read_yaml
from vlbench.errors import VlbenchError
from vlbench.gpu_shares import GpuShares, visible_gpus
from vlbench.options import build
from vlbench.records import RunDirectory
from vlbench.runner import Prepared, prepare, run, run_path, stored_run_change

STATE_DIR = ".suite"  # under the runs dir: per job, its configuration, log and outcome


@dataclass
class SuiteTask:
    task: str
    task_options: dict[str, Any] = field(default_factory=dict)
    data_root: str | None = None


@dataclass
class SuiteFile:
    tasks: list[Any]
    runs: list[dict[str, Any]]
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])


@dataclass(frozen=True)
class Job:
    """One run of a suite: a configuration and one seed, with the directory it writes and the
    configuration prepared (task built, options validated)."""

    config: RunConfig
    seed: int
    run_dir: Path
    prepared: Prepared = field(compare=False, repr=False)

    @property
    def key(self) -> str:
        """The run directory relative to the runs dir: unique within a suite."""
        return self.run_dir.relative_to(self.config.runs_dir).as_posix()

    def state_file(self, suffix: str) -> Path:
        return Path(self.config.runs_dir) / STATE_DIR / (self.key.replace("/", "__") + suffix)


def load_suite(path: Path, runs_dir: Path, data_dir: Path | None = None, overrides: dict[str, Any] | None = None) -> list[Job]:
    """Every job of the suite at `path`, validated (names, options, shots) without reading any
    model or data. `overrides` replace run keys of every entry (tests: `model`, `limit`)."""
    suite = build(SuiteFile, read_yaml(path), str(path))
    tasks = [build(SuiteTask, {"task": entry} if isinstance(entry, str) else entry, f"{path}: tasks") for entry in suite.tasks]
    jobs = []
    for task in tasks:
        for entry in suite.runs:
            entry = {**entry, **(overrides or {})}
            only = entry.pop("tasks", None)
            if only is not None and task.task not in only:
                continue
            root = task.data_root and str((data_dir or Path.cwd()) / task.data_root)
            values = {
                "seeds": suite.seeds, **entry, "task": task.task, "runs_dir": str(runs_dir),
                "task_options": {**task.task_options, **entry.get("task_options", {})}, "data_root": root,
            }
            config = load_run_config(None, values)
            prepared = prepare(config)
            jobs += [Job(_single_seed(config, seed), seed, run_path(prepared, seed), prepared) for seed in config.seeds]
    keys = [job.key for job in jobs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise VlbenchError(f"{path}: {repeated[0]} is listed twice (two entries with the same configuration)")
    return jobs


def _single_seed(config: RunConfig, seed: int) -> RunConfig:
    from dataclasses import replace

    return replace(config, seeds=[seed])


RESCORE_HINT = "delete its run directory (or rerun it with vlbench run --restart) to score it again"


def job_state(job: Job) -> str:
    """`done`, `stale` (finished, but the last `run_jobs` found its stored inputs differ from
    today's: it is not run again until its directory is deleted), `running` (another process
    holds its lock), `failed` (its last attempt stopped with an error), `partial` (scores, trained
    state or a training checkpoint stored, no results) or `pending`."""
    results, failed = job.run_dir / "results.json", job.state_file(".failed")
    if results.exists():  # a failure recorded before the results is an earlier attempt's
        return "stale" if failed.exists() and failed.stat().st_mtime_ns >= results.stat().st_mtime_ns else "done"
    if _locked(job.run_dir / "run.lock"):
        return "running"
    if failed.exists():
        return "failed"
    if RunDirectory(job.run_dir).holds_records():  # results.json, the other record it counts, is ruled out above
        return "partial"
    return "pending"


def job_states(jobs: list[Job]) -> list[tuple[str, str]]:
    """Each job's `job_state` and why it is stale or failed (its error line; '' otherwise). A done
    job whose code changed since it was stored is `stale` here already: its `identity.json`
    against today's source files, which reads no model or data (`run_jobs` checks those too)."""
    from vlbench.identity import changed_code
    from vlbench.provenance import run_code_sha256

    states = []
    for job in jobs:
        state = job_state(job)
        reason = failure(job) if state in ("failed", "stale") else ""
        if state == "done":
            change = changed_code(RunDirectory(job.run_dir).recorded_code(), run_code_sha256(job.prepared.matcher_class, type(job.prepared.task)))
            if change is not None:
                state, reason = "stale", f"error: {change}; {RESCORE_HINT}"
        states.append((state, reason))
    return states


def failure(job: Job) -> str:
    """The first line of the error that stopped the job's last attempt ('' if none)."""
    path = job.state_file(".failed")
    return path.read_text().splitlines()[0] if path.exists() else ""


def _locked(lock: Path) -> bool:
    import fcntl

    if not lock.exists():
        return False
    with open(lock) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


@dataclass(frozen=True)
class Missing:
    """A model or dataset that runs of a suite need and this machine lacks."""

    kind: str  # "model" or "data"
    problem: str
    users: tuple[str, ...]  # the matchers or tasks that need it

    @property
    def line(self) -> str:
        return f"{self.kind} for {', '.join(self.users)}: {self.problem}"


def missing_inputs(jobs: list[Job]) -> list[Missing]:
    """Each model or dataset that the jobs need and this machine lacks, once, naming who needs it
    (no network, no weights read). Task data is read as the runs read it: their files, and the
    image files of the examples each run evaluates (none where it skips bad examples) or trains on
    (a `stat` each, nothing decoded)."""
    from vlbench import registry
    from vlbench.datacheck import missing_files
    from vlbench.identity import image_files
    from vlbench.runner import draw

    needed_by: dict[tuple[str, str], list[str]] = {}  # (model or data, what is missing) -> who needs it
    checked: set[Any] = set()
    images: dict[tuple[str, str, str | None], set[Path]] = {}  # per dataset, the image files its runs read
    for job in jobs:
        config = job.config
        matcher_class = registry.matchers.get(config.matcher)
        if matcher_class.uses_model and ("model", config.matcher, config.model) not in checked:
            checked.add(("model", config.matcher, config.model))
            problem = matcher_class.missing_model(config.model)
            if problem:
                needed_by.setdefault(("model", problem), []).append(config.matcher)
        dataset = (config.task, json.dumps(config.task_options, sort_keys=True), config.data_root)
        try:
            drawn = draw(job.prepared, job.seed)
        except VlbenchError as error:
            if _data_read(job):
                continue  # the data is there: a protocol or its content is refused, by the run itself with this error
            needed_by.setdefault(("data", str(error)), []).append(config.task)
            continue
        read = ([] if config.on_bad_example == "skip" else drawn.evaluation) + drawn.training
        images.setdefault(dataset, set()).update(image_files(read))
    for (task, _, _), paths in images.items():
        missing = missing_files(paths)
        if missing:
            needed_by.setdefault(("data", f"task '{task}': {missing} (vlbench data check lists them)"), []).append(task)
    return [Missing(kind, problem, tuple(dict.fromkeys(users))) for (kind, problem), users in needed_by.items()]


def _data_read(job: Job) -> bool:
    """Whether the task's files that `job` reads load (its examples, and its training pool where it trains)."""
    try:
        job.prepared.task.examples(job.seed)
        if not job.config.shots_parsed.is_zero:
            job.prepared.task.train_pool(job.seed)
    except VlbenchError:
        return False
    return True


def job_work(job: Job) -> Work | None:
    """The UNet passes of the job's run from scratch, or None where its data is missing."""
    try:
        return run_work(job.prepared, job.seed)
    except VlbenchError:
        return None


def run_jobs(jobs: list[Job], parallel: int = 1, advance: Callable[[int], None] = lambda count: None, cluster: ClusterOptions | None = None) -> list[Job]:
    """Run every job not done: with `cluster`, as one submitit job array; else `parallel` at a
    time (1: in this process, one after another; more: each job in its own `vlbench run`
    process, spread over the GPUs where there are several: `GpuShares`). `advance(n)` counts jobs as they end. A job that fails is recorded and the others
    go on. A done job whose stored inputs differ from today's (weights, data, code or library
    versions) fails with the refusal a resume would give: it is never shown as if it were the
    run asked for. Returns the jobs that failed."""
    todo = [job for job in jobs if not (job.run_dir / "results.json").exists()]
    stale = _changed_since_stored([job for job in jobs if (job.run_dir / "results.json").exists()])
    advance(len(jobs) - len(todo))
    for job in todo:
        job.state_file("").parent.mkdir(parents=True, exist_ok=True)
        job.state_file(".failed").unlink(missing_ok=True)

    def counted(attempt: Callable[[Job], bool]) -> Callable[[Job], bool]:
        def one(job: Job) -> bool:
            ok = attempt(job)
            advance(1)
            return ok

        return one

    if cluster is not None and todo:
        _run_array(todo, cluster, advance)
        outcomes = [not job.state_file(".failed").exists() for job in todo]
    elif parallel == 1:
        outcomes = [counted(_run_here)(job) for job in todo]
    else:
        environment, children, gpus = job_environment(parallel), JobProcesses(), GpuShares(visible_gpus())
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            try:
                outcomes = list(pool.map(counted(lambda job: _run_process(job, environment, children, gpus)), todo))
            except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (the CLI raises it): the running jobs stop as they would, what they stored is kept
                children.stop()
                raise
    return stale + [job for job, ok in zip(todo, outcomes) if not ok]


def _changed_since_stored(done: list[Job]) -> list[Job]:
    """The done jobs whose stored inputs differ from today's (or cannot be read: a model or data
    root gone), each with its refusal recorded; a matcher is built once per configuration to
    fingerprint it, and let go before any job runs."""
    import torch

    matchers: dict[str, dict[str, Any]] = {}
    changed = []
    for job in done:
        try:
            change = stored_run_change(job.prepared, job.seed, matchers)
            problem = change and f"{change}; {RESCORE_HINT}"
        except VlbenchError as error:
            problem = str(error)
        job.state_file("").parent.mkdir(parents=True, exist_ok=True)
        if problem is None:
            job.state_file(".failed").unlink(missing_ok=True)
        else:
            job.state_file(".failed").write_text(f"error: {problem}\n")
            changed.append(job)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the matchers built here are gone; their cached blocks would sit idle beside the jobs
    return changed


def _run_here(job: Job) -> bool:
    try:
        run(prepare(job.config), job.seed)
    except VlbenchError as error:
        job.state_file(".failed").write_text(f"error: {error}\n")
        return False
    return True


def _config_file(job: Job) -> Path:
    """The job's configuration as a `vlbench run --config` file."""
    import yaml

    config_file = job.state_file(".yaml")
    values = {key: value for key, value in vars(job.config).items() if key != "shots_parsed"}
    config_file.write_text(yaml.safe_dump(values, sort_keys=False))
    return config_file


def job_environment(parallel: int) -> dict[str, str]:
    """The environment of each job process when `parallel` run at once: the CPU cores shared out
    (`OMP_NUM_THREADS`, which sets PyTorch's threads), unless the user set it. Each process taking
    every core would oversubscribe them."""
    environment = dict(os.environ)
    environment.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // parallel)))
    return environment


class JobProcesses:
    """The job processes of a suite running now, each in its own session (a Ctrl-C in the terminal
    reaches the suite alone); once stopped, the running ones get SIGTERM (they stop as a Ctrl-C
    stops a run, keeping what they stored; SIGINT may be ignored, as in a job started in the
    background) and no other one starts."""

    def __init__(self) -> None:
        self.running: set[subprocess.Popen] = set()
        self.stopped = False
        self.lock = threading.Lock()

    def start(self, command: list[str], **options: Any) -> subprocess.Popen | None:
        """The started process, or None once stopped."""
        with self.lock:
            if self.stopped:
                return None
            process = subprocess.Popen(command, start_new_session=True, **options)  # signalled by the suite alone, once
            self.running.add(process)
            return process

    def wait(self, process: subprocess.Popen) -> int:
        code = process.wait()
        with self.lock:
            self.running.discard(process)
        return code

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            for process in self.running:
                process.send_signal(signal.SIGTERM)


def _run_process(job: Job, environment: dict[str, str], children: JobProcesses, gpus: GpuShares) -> bool:
    if children.stopped:
        return False
    config_file = _config_file(job)
    with open(job.state_file(".log"), "w") as log, gpus.environment(job.config.device, environment) as process_environment:
        process = children.start(vlbench_command("run", "--config", str(config_file)), stdout=log, stderr=subprocess.STDOUT, env=process_environment)
        if process is None:
            return False
        code = children.wait(process)
    if code != 0 and not (job.run_dir / "results.json").exists():  # a job to do has none: one now means it finished, then stopped
        if children.stopped:  # stopped with the suite: partial or pending, not failed
            return False
        error = first_error_line(job.state_file(".log").read_text())
        job.state_file(".failed").write_text((error or f"exit {code}; see {job.state_file('.log')}") + "\n")
        return False
    return True


def _run_array(todo: list[Job], cluster: ClusterOptions, advance: Callable[[int], None]) -> None:
    def submitted(job_ids: list[str]) -> None:
        for job, job_id in zip(todo, job_ids):
            job.state_file(".submitted").write_text(job_id + "\n")

    def ended(index: int, error: str | None) -> None:
        if error is not None:
            todo[index].state_file(".failed").write_text(error + "\n")
        advance(1)

    folder = Path(todo[0].config.runs_dir) / STATE_DIR / "submitit"
    run_array([_config_file(job) for job in todo], cluster, folder, submitted, ended)


def submitted_as(job: Job) -> str:
    """The cluster job id of the job's last submission ('' if it was never submitted)."""
    path = job.state_file(".submitted")
    return path.read_text().strip() if path.exists() else ""
