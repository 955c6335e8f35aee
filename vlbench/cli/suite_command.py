"""`vlbench suite`: plan, run and follow the runs of a suite file."""

from __future__ import annotations

from pathlib import Path

import typer

suite_app = typer.Typer(help="Suites: many runs defined in one YAML file (see `vlbench.suites`).", no_args_is_help=True)

RUNS_DIR = typer.Option(Path("runs"), "--runs-dir", help="Where the suite's runs go (finished runs are skipped, unfinished ones resumed).")
DATA_DIR = typer.Option(None, "--data-dir", help="What the tasks' data_root entries are relative to (default: the working directory).")


@suite_app.command("plan")
def plan(
    suite: Path = typer.Argument(..., help="Suite YAML."),
    runs_dir: Path = RUNS_DIR,
    data_dir: Path = DATA_DIR,
    unet_rate: float = typer.Option(None, "--unet-rate", help="UNet passes per second on your GPU, to turn the estimate into GPU-hours (dsd's pairs/s from benchmarks/dsd_speed.py × its 4 noise levels)."),
) -> None:
    """List every run with its state and UNet passes, and every model or dataset this machine
    lacks (offline; no weights are read)."""
    from vlbench.compute import BACKWARD_COST, Work
    from vlbench.errors import VlbenchError
    from vlbench.suites import job_states, job_work, load_suite, missing_inputs

    if unet_rate is not None and not unet_rate > 0:
        raise VlbenchError(f"--unet-rate {unet_rate}: must be a positive number of passes per second")
    jobs = load_suite(suite, runs_dir, data_dir)
    states = [state for state, _ in job_states(jobs)]
    total, uncounted = Work(), 0
    for job, state in zip(jobs, states):
        work = job_work(job)
        if state not in ("done", "stale"):
            total += work or Work()
            uncounted += work is None
        passes = "UNet passes: unknown (data missing)" if work is None else f"UNet passes: {work.scoring:,} scoring + {work.training:,} training"
        typer.echo(f"{state:<8} {job.key}  {passes}")
    counts = {state: states.count(state) for state in dict.fromkeys(states)}
    typer.echo(f"{len(jobs)} runs: " + ", ".join(f"{count} {state}" for state, count in counts.items()))
    not_counted = f" ({uncounted} runs without their data not counted)" if uncounted else ""
    typer.echo(f"to do, from scratch: {total.scoring:,} UNet passes scoring and {total.training:,} training, each with a backward{not_counted}")
    if "stale" in counts:
        typer.echo(f"not counted: {counts['stale']} stale runs (finished, but their code changed since, or the last suite run found their inputs changed; see vlbench suite status): delete their run directories to run them again")
    if unet_rate is not None:
        typer.echo(f"at {unet_rate:g} UNet passes/s, a backward costing {BACKWARD_COST} passes: {total.hours(unet_rate):.2f} GPU-hours")
    missing = missing_inputs(jobs)
    for item in missing:
        typer.echo(f"missing: {item.line}")
    if not missing:
        typer.echo("every model and dataset the suite needs is on this machine")


@suite_app.command("run")
def run(
    suite: Path = typer.Argument(..., help="Suite YAML."),
    runs_dir: Path = RUNS_DIR,
    data_dir: Path = DATA_DIR,
    executor: str = typer.Option("local", "--executor", help="local (this machine), slurm (one job array through submitit; from a login node) or submitit-local (the same array on this machine)."),
    jobs: int = typer.Option(1, "--jobs", help="local: runs at a time (1 runs them in this process; more runs each in its own process, spread over the visible GPUs)."),
    slurm_partition: str = typer.Option(None, "--slurm-partition", help="slurm: the partition to submit to."),
    gpus_per_job: int = typer.Option(1, "--gpus-per-job", help="slurm: GPUs per run; more than 1 runs it under torchrun, one process per GPU."),
    cpus_per_job: int = typer.Option(None, "--cpus-per-job", help="slurm: CPU cores per run."),
    mem_gb: int = typer.Option(None, "--mem-gb", help="slurm: memory per run."),
    time_limit: int = typer.Option(24 * 60, "--time-limit", help="slurm: minutes each run may take (a run cut off resumes when the suite runs again)."),
    array_parallelism: int = typer.Option(64, "--array-parallelism", help="slurm: runs of the array at once."),
    poll_seconds: float = typer.Option(30.0, "--poll-seconds", help="slurm: how often to ask Slurm whether runs ended."),
    out: Path = typer.Option(None, "--out", help="Write the suite's leaderboard (markdown) here once every run is done."),
    baseline: str = typer.Option(None, "--baseline", help="Matcher (or zero-shot) to compare rows against (paired over examples: a bootstrap interval, a sign-flip p)."),
    plots: Path = typer.Option(None, "--plots", help="Write PNG plots into this directory and link them (needs matplotlib)."),
) -> None:
    """Run every run of the suite that is not done, then write its leaderboard."""
    import shlex

    from vlbench.cluster import ClusterOptions
    from vlbench.errors import VlbenchError

    if executor not in ("local", "slurm", "submitit-local"):
        raise VlbenchError(f"--executor {executor}: choose local, slurm or submitit-local")
    if gpus_per_job < 0 or time_limit < 1 or array_parallelism < 1 or not poll_seconds > 0:
        raise VlbenchError("--gpus-per-job must be at least 0, --time-limit and --array-parallelism at least 1, --poll-seconds positive")
    cluster = None if executor == "local" else ClusterOptions(executor, slurm_partition, gpus_per_job, cpus_per_job, mem_gb, time_limit, array_parallelism, poll_seconds)  # type: ignore[arg-type]
    options = f" --runs-dir {shlex.quote(str(runs_dir))}" + (f" --data-dir {shlex.quote(str(data_dir))}" if data_dir is not None else "")
    run_suite_command(suite, runs_dir, data_dir, jobs, out, baseline, plots, f"vlbench suite run {suite}", options, cluster=cluster)


@suite_app.command("status")
def status(suite: Path = typer.Argument(..., help="Suite YAML."), runs_dir: Path = RUNS_DIR, data_dir: Path = DATA_DIR) -> None:
    """Done, stale or failed (with the error), running, partial or pending, per run, with the cluster job
    that last ran it."""
    from vlbench.suites import job_states, load_suite, submitted_as

    jobs = load_suite(suite, runs_dir, data_dir)
    for job, (state, reason) in zip(jobs, job_states(jobs)):
        cluster_job = submitted_as(job)
        typer.echo(f"{state:<8} {job.key}" + (f"  [job {cluster_job}]" if cluster_job and state != "done" else "") + (f"  {reason}" if reason else ""))


def run_suite_command(suite: Path, runs_dir: Path, data_dir: Path | None, jobs: int, out: Path | None, baseline: str | None, plots: Path | None, command: str, options: str, where: str = "", cluster=None) -> None:
    """Run the suite (on `cluster`, a `ClusterOptions`, if given), print its board and write it to
    `out` stamped with the command that regenerates it (`command --out OUT` then `options`) and
    `where` it runs (e.g. "offline")."""
    from vlbench.errors import VlbenchError
    from vlbench.leaderboard.publish import render_board
    from vlbench.leaderboard.tables import check_baseline
    from vlbench.progress import progress_bar
    from vlbench.records import atomic_write_text, writable_file
    from vlbench.suites import failure, load_suite, missing_inputs, run_jobs

    if jobs < 1:
        raise VlbenchError(f"--jobs {jobs}: must be at least 1")
    if out is not None:
        writable_file(out, "--out")
    planned = load_suite(suite, runs_dir, data_dir)
    check_baseline(baseline, [job.config.matcher for job in planned])  # before hours of runs, not after
    refuse_missing_inputs(missing_inputs(planned))
    code = code_state()  # before anything is written: the board's own plots may be tracked files
    with progress_bar("suite", total=len(planned)) as advance:
        failed = run_jobs(planned, jobs, advance, cluster)
    if failed:
        for job in failed:
            typer.echo(f"failed: {job.key}: {failure(job)}", err=True)
        raise VlbenchError(f"{len(failed)} of {len(planned)} runs failed; fix them and run the same command again (finished runs are kept)")
    markdown = render_board([job.run_dir for job in planned], baseline=baseline, plots=plots, out=out)  # the suite's runs, not whatever else the directory holds
    typer.echo(markdown)
    if out:
        options += (f" --baseline {baseline}" if baseline else "") + (f" --plots {plots}" if plots else "") + (f" --jobs {jobs}" if jobs != 1 else "")
        atomic_write_text(out, with_provenance(markdown, f"{command} --out {out}{options}", code, where))
        typer.echo(f"leaderboard: {out}")


def refuse_missing_inputs(missing) -> None:
    """Stop a suite before any run where `suite plan` finds data missing, or a model that cannot be
    downloaded (offline): every run needing it would fail after trying. A model missing online is
    noted: its first run downloads it."""
    from huggingface_hub import constants

    from vlbench.errors import VlbenchError

    blocking = [item for item in missing if item.kind == "data" or constants.HF_HUB_OFFLINE]
    for item in missing:
        typer.echo(f"missing: {item.line}" + ("" if item in blocking else "; the first run that needs it downloads it"), err=True)
    if blocking:
        which = "the" if len(blocking) == len(missing) else f"{len(blocking)} of the"
        raise VlbenchError(f"{which} {len(missing)} missing models and datasets listed above cannot be fetched by a run (data is never downloaded; models are not while the hub is offline); nothing was run")


def code_state() -> tuple[str | None, bool]:
    """The commit of vlbench's source tree and whether it has uncommitted changes."""
    from vlbench.provenance import checkout_state

    return checkout_state()


def with_provenance(markdown: str, command: str, code: tuple[str | None, bool], where: str = "") -> str:
    """The board with the command that regenerates it, the date and the commit (`code`, from
    `code_state`) it was drawn at, under its title (the board names the sources its runs were
    computed by)."""
    import datetime

    from vlbench.version import __version__

    commit, dirty = code
    stamp = (
        f"Regenerate from scratch{f' ({where})' if where else ''}: `{command}`. "
        f"Generated {datetime.date.today().isoformat()} from commit {commit or 'unknown'}{' with uncommitted changes' if dirty else ''}, vlbench {__version__}."
    )
    title, rest = markdown.split("\n\n", 1)
    return f"{title}\n\n{stamp}\n\n{rest}"
