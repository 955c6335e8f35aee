"""Suites: the plan names every run and what is missing without the network; runs in parallel
processes give the sequential board; a failed run is reported and the rest finish; a re-run
finishes only what is missing."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path

import pytest

import vlbench
from conftest import vlbench_cli
from vlbench.leaderboard.publish import render_board
from vlbench.suites import job_state, load_suite

SMALL = """\
seeds: [0, 1]
tasks: [colors, {task: colors, task_options: {n_examples: 30}}]
runs:
  - {matcher: random}
  - {matcher: color-words, tasks: [colors]}
"""


def test_plan_lists_every_run_and_what_this_machine_lacks(tmp_path):
    extra = '  - {matcher: clip, model: "ViT-B-16:openai", seeds: [0]}\n  - {matcher: dsd, model: "stabilityai/stable-diffusion-2-1-base", tasks: [comvg], seeds: [0]}\n'
    (tmp_path / "s.yaml").write_text((SMALL + extra).replace("tasks: [colors, ", "tasks: [comvg, colors, "))
    done = vlbench_cli("suite", "plan", "s.yaml", "--data-dir", "data", cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    lines = done.stdout.splitlines()
    runs = [line.split()[1] for line in lines if line.startswith("pending ")]
    assert len(runs) == 3 * 2 + 2 * 2 + 3 + 1  # random: 3 tasks × 2 seeds; color-words: both colors entries; clip: one seed; dsd: comvg only
    assert sum(run.startswith("colors/color-words/") for run in runs) == 4 and sum(run.startswith("comvg/dsd/") for run in runs) == 1
    assert "14 runs: 14 pending" in lines
    missing = [line for line in lines if line.startswith("missing: ")]
    assert len(missing) == 3
    assert any(line.startswith("missing: model for clip: ViT-B-16:openai: not in the local Hugging Face cache") for line in missing)
    assert any(line.startswith("missing: model for dsd: stabilityai/stable-diffusion-2-1-base is not in the local Hugging Face cache") for line in missing)
    assert any(line.startswith("missing: data for comvg: task 'comvg' needs its data") for line in missing)
    assert not (tmp_path / "runs").exists()


SHIPPED_SUITES = sorted((Path(__file__).parent.parent / "suites").glob("*.yaml")) + sorted((Path(__file__).parent.parent / "leaderboard").glob("*_suite.yaml"))


@pytest.mark.parametrize("path", SHIPPED_SUITES, ids=lambda path: path.name)
def test_every_shipped_suite_loads_with_each_run_s_matcher_and_task(path, tmp_path):
    """Names, options, shots and training settings of every entry are valid (nothing is read)."""
    jobs = load_suite(path, tmp_path / "runs", tmp_path / "data")
    assert jobs and len({job.key for job in jobs}) == len(jobs)


def test_the_paper_suite_plans_every_table_cell_and_names_every_download(tmp_path):
    paper = Path(__file__).parent.parent / "suites" / "dsd-paper.yaml"
    done = vlbench_cli("suite", "plan", str(paper), "--data-dir", "data", cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    lines = done.stdout.splitlines()
    runs = [line.split()[1] for line in lines if line.startswith("pending ")]
    # 5 task entries × (clip; clip-ft, cocoop, dsd, dsd-release, each zero-shot and 5%) × 3 seeds
    assert len(runs) == 5 * 9 * 3 and f"{len(runs)} runs: {len(runs)} pending" in lines
    for task in ("comvg", "refcocog", "vqav2", "winoground"):
        cells = {run.rsplit("/", 1)[0].split("/", 1)[1].rsplit("-", 1)[0] for run in runs if run.startswith(task + "/")}
        assert {"clip/shots-0", "clip-ft/shots-0", "clip-ft/shots-5pct", "cocoop/shots-0", "cocoop/shots-5pct", "dsd/shots-0", "dsd/shots-5pct", "dsd-release/shots-0", "dsd-release/shots-5pct"} == cells
    missing = [line for line in lines if line.startswith("missing: ")]
    assert any(line.startswith("missing: model for clip, clip-ft, cocoop: ViT-B-16:openai: not in the local Hugging Face cache") for line in missing)
    assert any(line.startswith("missing: model for dsd, dsd-release: stabilityai/stable-diffusion-2-1-base is not in the local Hugging Face cache") for line in missing)
    for task in ("comvg", "refcocog", "vqav2", "winoground"):
        assert any(line.startswith(f"missing: data for {task}: task '{task}': data root data/{task} does not exist") for line in missing), task


def test_a_suite_board_shows_the_suite_s_runs_only(tmp_path):
    """Another run in the same runs directory (not in the suite, so not checked by it) stays off
    the board, which says the suite regenerates it."""
    (tmp_path / "s.yaml").write_text("seeds: [0]\ntasks: [colors]\nruns:\n  - {matcher: random}\n")
    vlbench_cli("run", "--task", "colors", "--matcher", "color-words", "--runs-dir", "runs", cwd=tmp_path)
    log = vlbench_cli("suite", "run", "s.yaml", "--runs-dir", "runs", "--data-dir", "my data", "--out", "board.md", cwd=tmp_path).stderr
    board = (tmp_path / "board.md").read_text()
    assert "| random |" in board and "color-words" not in board
    (results,) = (tmp_path / "runs" / "colors" / "random").rglob("results.json")
    sources = json.loads(results.read_text())["code"]["sources_sha256"]
    stamp = board.split("\n\n", 2)[1]
    assert stamp.startswith("Regenerate from scratch: `vlbench suite run s.yaml --out board.md --runs-dir runs --data-dir 'my data'`. Generated "), stamp
    assert re.search(r", vlbench [^ ]+\.$", stamp), stamp
    assert f"\nMeasured rows were computed by sources {sources[:12]}… (`code.sources_sha256` in their results.json: vlbench's files and their plugins').\n" in board
    assert re.search(r"\nTheir runs ran on cpu \(.+, \d+ threads?\): 1 run \(`provenance.sessions\[\]\.device`\)\.\n", board), board
    assert "scoring · colors · random · shots 0 · seed 0" in log  # which run each bar of a suite's log is for
    typo = vlbench_cli("suite", "run", "s.yaml", "--runs-dir", "other", "--baseline", "randmo", cwd=tmp_path, check=False)
    assert typo.returncode == 2 and "--baseline randmo: no row of that matcher on this board. Did you mean 'random'?" in typo.stderr
    assert not (tmp_path / "other").exists()  # refused before any run


def test_a_multi_gpu_array_task_runs_vlbench_under_torchrun_without_the_working_directory_on_its_path():
    from vlbench.cluster import run_command, vlbench_command

    assert run_command(Path("c.yaml"), 1) == vlbench_command("run", "--config", "c.yaml")
    assert run_command(Path("c.yaml"), 4) == [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "4", "--no-python", *vlbench_command("run", "--config", "c.yaml")]
    assert vlbench_command("run")[:2] == [sys.executable, "-c"] and "sys.path[:1]" in vlbench_command("run")[2]


def decoy_package(folder: Path) -> None:
    """A folder named like the package in the job processes' working directory (a checkout seen
    from its parent), with a module that fails if a job process imports it."""
    (folder / "vlbench").mkdir()
    (folder / "vlbench" / "errors.py").write_text("raise ImportError('a job process imported the working directory\'s vlbench folder')\n")


def test_parallel_processes_give_the_sequential_board(tmp_path):
    (tmp_path / "s.yaml").write_text(SMALL)
    decoy_package(tmp_path)
    vlbench_cli("suite", "run", "s.yaml", "--runs-dir", "one", cwd=tmp_path)
    vlbench_cli("suite", "run", "s.yaml", "--runs-dir", "two", "--jobs", "2", "--out", "two.md", cwd=tmp_path)
    sequential, parallel = render_board([tmp_path / "one"]), render_board([tmp_path / "two"])

    def devices(board):
        return [line for line in board.splitlines() if line.startswith("Their runs ran on ")]

    # the same numbers; the devices line tells the one process's threads from each job's one thread
    assert re.sub(r"\d+ threads?\)", "N threads)", devices(sequential)[0]) == re.sub(r"\d+ threads?\)", "N threads)", devices(parallel)[0])
    assert ", 1 thread): 8 runs" in devices(parallel)[0]
    assert [line for line in sequential.splitlines() if line not in devices(sequential)] == [line for line in parallel.splitlines() if line not in devices(parallel)]
    # the two task entries read different data, so each gets its own table
    assert sequential.count("## colors (n_examples=") == 2 and sequential.count("| random |") == 2
    assert "`vlbench suite run s.yaml --out two.md --runs-dir two --jobs 2`" in (tmp_path / "two.md").read_text()
    jobs = load_suite(tmp_path / "s.yaml", tmp_path / "two")
    assert len(jobs) == 8 and all(job_state(job) == "done" for job in jobs)


def test_parallel_job_processes_share_the_cores_unless_the_user_set_the_threads(monkeypatch):
    from vlbench.suites import job_environment

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert [job_environment(parallel)["OMP_NUM_THREADS"] for parallel in (2, 3, 8, 16)] == ["4", "2", "1", "1"]
    monkeypatch.setenv("OMP_NUM_THREADS", "6")
    assert job_environment(2)["OMP_NUM_THREADS"] == "6"


def test_parallel_job_processes_each_get_a_gpu_of_their_own_the_least_busy_first(tmp_path, monkeypatch):
    import threading

    import torch

    from vlbench import suites
    from vlbench.suites import run_jobs

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7,9")  # CUDA stops at the first entry it cannot use: PyTorch sees two
    (tmp_path / "s.yaml").write_text("seeds: [0, 1, 2, 3]\ntasks: [colors]\nruns:\n  - {matcher: random}\n")
    jobs = load_suite(tmp_path / "s.yaml", tmp_path / "runs")
    together, given = threading.Barrier(2), []

    class JobProcess:
        """A job process that ends once another one runs beside it."""

        def __init__(self, command, env, **options):
            given.append(env["CUDA_VISIBLE_DEVICES"])

        def wait(self):
            together.wait()
            return 0

    monkeypatch.setattr(suites.subprocess, "Popen", JobProcess)
    assert run_jobs(jobs, parallel=2) == []
    assert sorted(given[:2]) == sorted(given[2:]) == ["5", "7"]  # the two running at once never share a GPU


def test_jobs_on_the_cpu_or_naming_a_gpu_keep_the_suites_environment():
    from vlbench.gpu_shares import GpuShares

    shares, suite = GpuShares(["0", "1"]), {"OMP_NUM_THREADS": "4"}
    with shares.environment("cuda", suite) as first, shares.environment("auto", suite) as second, shares.environment("cuda", suite) as third:
        assert [first["CUDA_VISIBLE_DEVICES"], second["CUDA_VISIBLE_DEVICES"], third["CUDA_VISIBLE_DEVICES"]] == ["0", "1", "0"]
    with shares.environment("cpu", suite) as cpu, shares.environment("cuda:1", suite) as named:
        assert cpu == named == suite
    with GpuShares([]).environment("auto", suite) as without_gpus:
        assert without_gpus == suite


def test_a_failed_run_is_reported_the_others_finish_and_a_rerun_completes_only_what_is_missing(tmp_path):
    suite = tmp_path / "s.yaml"
    # paper-release is refused on colors at run time (after the plan validated the options).
    suite.write_text(SMALL + "  - {matcher: random, shots: '5', split: paper-release, seeds: [0], tasks: [colors]}\n")
    failed = vlbench_cli("suite", "run", "s.yaml", "--runs-dir", "runs", cwd=tmp_path, check=False)
    assert failed.returncode == 2
    assert "error: 2 of 10 runs failed; fix them and run the same command again (finished runs are kept)" in failed.stderr
    status = vlbench_cli("suite", "status", "s.yaml", "--runs-dir", "runs", cwd=tmp_path).stdout.splitlines()
    failures = [line for line in status if line.startswith("failed ")]
    assert len(failures) == 2 and all("error: --split paper-release: the released DSD code does not cut the evaluation rows of task 'colors'" in line for line in failures)
    assert sum(line.startswith("done ") for line in status) == 8
    # A run that lost its results (as if killed after its last score) is finished; nothing else reruns.
    jobs = {job.key: job for job in load_suite(suite, tmp_path / "runs")}
    victim = next(job for key, job in jobs.items() if key.startswith("colors/random/shots-0-"))
    (victim.run_dir / "results.json").unlink()
    assert job_state(victim) == "partial"
    suite.write_text(SMALL)
    others = {key: (job.run_dir / "results.json").stat().st_mtime_ns for key, job in jobs.items() if job_state(job) == "done"}
    vlbench_cli("suite", "run", "s.yaml", "--runs-dir", "runs", cwd=tmp_path)
    assert {key: (jobs[key].run_dir / "results.json").stat().st_mtime_ns for key in others} == others
    timings = json.loads((victim.run_dir / "results.json").read_text())["timings"]
    assert timings["examples_scored"] == 0 and timings["examples_resumed"] > 0


def fake_slurm(tmp_path: Path) -> dict[str, str]:
    """An environment whose `sbatch`, `srun` and `sacct` are `tests/fake_slurm.py`."""
    binaries = tmp_path / "slurm-bin"
    binaries.mkdir()
    for command in ("sbatch", "srun", "sacct"):
        wrapper = binaries / command
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).parent / "fake_slurm.py"}" {command} "$@"\n')
        wrapper.chmod(0o755)
    (tmp_path / "slurm-state").mkdir()
    return {"PATH": f"{binaries}:{os.environ['PATH']}", "FAKE_SLURM_DIR": str(tmp_path / "slurm-state")}


def test_the_slurm_executor_submits_one_array_and_gives_the_local_board(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(SMALL + "  - {matcher: random, shots: '5', split: paper-release, seeds: [0], tasks: [colors]}\n")
    environment = fake_slurm(tmp_path)
    decoy_package(tmp_path)
    slurm = ("--executor", "slurm", "--slurm-partition", "gpu", "--gpus-per-job", "1", "--time-limit", "90", "--array-parallelism", "3", "--poll-seconds", "1")
    failed = vlbench_cli("suite", "run", "s.yaml", "--runs-dir", "cluster", *slurm, cwd=tmp_path, env=environment, check=False)
    assert failed.returncode == 2 and "error: 2 of 10 runs failed" in failed.stderr
    script = (tmp_path / "slurm-state" / "submitted-4200.sh").read_text()
    for line in ("#SBATCH --array=0-9%3", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --time=90", "#SBATCH --ntasks-per-node=1"):
        assert line in script.splitlines(), line
    status = vlbench_cli("suite", "status", "s.yaml", "--runs-dir", "cluster", cwd=tmp_path).stdout.splitlines()
    failures = [line for line in status if line.startswith("failed ")]
    assert len(failures) == 2 and all("[job 4200_" in line and "error: --split paper-release: the released DSD code does not cut" in line for line in failures)
    # Without the failing entry, a second submission finishes the suite; its board is the local one.
    suite.write_text(SMALL)
    vlbench_cli("suite", "run", "s.yaml", "--runs-dir", "cluster", *slurm, cwd=tmp_path, env=environment)
    assert not (tmp_path / "slurm-state" / "submitted-4201.sh").exists()  # every run was done: nothing submitted
    vlbench_cli("suite", "run", "s.yaml", "--runs-dir", "local", cwd=tmp_path)
    assert render_board([tmp_path / "cluster"]) == render_board([tmp_path / "local"])


def test_the_slurm_executor_says_where_to_run_it_when_there_is_no_slurm(tmp_path):
    (tmp_path / "s.yaml").write_text(SMALL)
    done = vlbench_cli("suite", "run", "s.yaml", "--executor", "slurm", cwd=tmp_path, env={"PATH": os.path.dirname(sys.executable)}, check=False)
    assert done.returncode == 2 and "error: --executor slurm: sbatch is not on PATH; run the suite from a Slurm login node" in done.stderr


def test_the_paper_suite_runs_end_to_end_on_the_mini_models(tmp_path):
    """Every entry of `suites/dsd-paper.yaml` on a small mini-world written in the real layouts
    (so 5% is one or two training examples), with `model: mini`, one evaluation example and one
    seed: 45 runs, then the board."""
    from vlbench.suites import failure, run_jobs
    from vlbench.tasks.miniworld.writers import Sizes, write_all

    write_all(tmp_path / "data", seed=3, sizes=Sizes(comvg=40, refcocog_images=20, vqav2_images_per_split=10, winoground=30))
    paper = Path(__file__).parent.parent / "suites" / "dsd-paper.yaml"
    jobs = load_suite(paper, tmp_path / "runs", tmp_path / "data", overrides={"model": "mini", "limit": 1, "seeds": [0]})
    assert len(jobs) == 5 * 9
    failed = run_jobs(jobs)
    assert not failed, {job.key: failure(job) for job in failed}
    board = render_board([tmp_path / "runs"])
    tables = {section.split("\n", 1)[0]: section for section in board.split("\n## ")[1:]}
    assert [name for name in tables if name.startswith("refcocog")] == ["refcocog (eval_split=test)", "refcocog (eval_split=val)"]  # two data, two tables
    for name, section in tables.items():
        rows = [line for line in section.splitlines() if line.startswith("| ")]
        for matcher, shots in (("clip", "0"), ("clip-ft", "0"), ("clip-ft", "5%"), ("cocoop", "0"), ("cocoop", "5%"), ("dsd", "0"), ("dsd", "5%"), ("dsd-release", "0"), ("dsd-release", "5%")):
            cells = [row for row in rows if re.match(rf"\| {matcher} \(mini\) \| {re.escape(shots)} \| 1 \|", row)]
            assert len(cells) == 1, (name, matcher, shots, rows)
    assert len(tables) == 5


def test_a_finished_run_whose_data_changed_is_refused_not_shown(tmp_path):
    """A suite re-run checks its finished runs' inputs as a resume would: changed data makes the
    run stale with the refusal (its stored scores are not shown as if they were the run asked
    for, and the plan does not count it as work); the data restored, it is done again."""
    from placeholders import REAL_COMVG_CSV, comvg_root
    from vlbench.suites import failure, run_jobs

    source = tmp_path / "comvg.csv"
    original = "\n".join(REAL_COMVG_CSV.read_text().splitlines()[:13]) + "\n"
    source.write_text(original)
    data = comvg_root(tmp_path / "data", source)
    (tmp_path / "s.yaml").write_text(f"seeds: [0]\ntasks: [{{task: comvg, data_root: {data}}}]\nruns:\n  - {{matcher: random}}\n")
    jobs = load_suite(tmp_path / "s.yaml", tmp_path / "runs")
    assert run_jobs(jobs) == [] and job_state(jobs[0]) == "done"
    stored = next((tmp_path / "runs").rglob("results.json")).read_bytes()

    csv = data / "compositional_visual_genome.csv"
    csv.write_text(original.replace("a man is sitting", "a man is standing", 1))
    (failed,) = run_jobs(jobs)
    assert failure(failed).startswith("error: the data of task 'comvg' changed since these scores were stored") and job_state(failed) == "stale"
    plan = vlbench_cli("suite", "plan", "s.yaml", "--runs-dir", "runs", cwd=tmp_path).stdout
    assert "1 runs: 1 stale" in plan and "not counted: 1 stale runs" in plan, plan
    assert next((tmp_path / "runs").rglob("results.json")).read_bytes() == stored

    csv.write_text(original)
    assert run_jobs(jobs) == [] and job_state(jobs[0]) == "done"

    # Stored by other code: status and plan say so before any suite run, from identity.json alone.
    identity_file = jobs[0].run_dir / "identity.json"
    identity = json.loads(identity_file.read_text())
    identity["inputs"]["code"]["vlbench/metrics.py"] = "0" * 64
    identity_file.write_text(json.dumps(identity))
    status = vlbench_cli("suite", "status", "s.yaml", "--runs-dir", "runs", cwd=tmp_path).stdout
    assert status.startswith("stale") and "error: vlbench's code changed since these scores were stored (vlbench/metrics.py differs); delete its run directory" in status, status
    assert "1 runs: 1 stale" in vlbench_cli("suite", "plan", "s.yaml", "--runs-dir", "runs", cwd=tmp_path).stdout
    identity["inputs"]["code"]["vlbench/metrics.py"] = hashlib.sha256((Path(vlbench.__file__).parent / "metrics.py").read_bytes()).hexdigest()
    identity_file.write_text(json.dumps(identity))
    assert vlbench_cli("suite", "status", "s.yaml", "--runs-dir", "runs", cwd=tmp_path).stdout.startswith("done")

    # A failure older than the results (an attempt before the run succeeded) is no failure now.
    failed_file = jobs[0].state_file(".failed")
    failed_file.write_text("error: an earlier attempt\n")
    results = next((tmp_path / "runs").rglob("results.json")).stat().st_mtime_ns
    os.utime(failed_file, ns=(results - 10**9, results - 10**9))
    assert job_state(jobs[0]) == "done"

    # A finished run whose data root is gone fails on its own; the suite goes on.
    data.rename(tmp_path / "moved")
    (failed,) = run_jobs(jobs)
    assert "data root" in failure(failed) and "does not exist" in failure(failed), failure(failed)


def test_a_job_process_stopped_after_writing_its_results_is_done_not_stale(tmp_path):
    from vlbench import suites
    from vlbench.gpu_shares import GpuShares

    (tmp_path / "s.yaml").write_text("seeds: [0, 1]\ntasks: [colors]\nruns:\n  - {matcher: random}\n")
    finished, stopped = load_suite(tmp_path / "s.yaml", tmp_path / "runs")
    finished.state_file(".log").parent.mkdir(parents=True)  # as run_jobs makes it

    class Interrupted(suites.JobProcesses):
        """Job processes that exit 130, as on a Ctrl-C, after writing their results or not."""

        def __init__(self, job, writes_results):
            super().__init__()
            self.job, self.writes_results = job, writes_results

        def start(self, command, **options):
            return command

        def wait(self, process):
            if self.writes_results:
                self.job.run_dir.mkdir(parents=True, exist_ok=True)
                (self.job.run_dir / "results.json").write_text("{}")
            return 130

    no_gpus = GpuShares([])
    assert suites._run_process(finished, {}, Interrupted(finished, True), no_gpus) and job_state(finished) == "done"  # while it printed its metrics
    assert not suites._run_process(stopped, {}, Interrupted(stopped, False), no_gpus) and job_state(stopped) == "failed"  # while it scored, the suite still on


def test_stopping_the_job_processes_interrupts_the_running_ones_and_starts_no_other():
    import subprocess

    from vlbench.suites import JobProcesses

    children = JobProcesses()
    waiting = "import signal; print('ready', flush=True); signal.pause()"  # until a signal ends it (SIGINT may be ignored here)
    process = children.start([sys.executable, "-c", waiting], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "ready\n"
    children.stop()
    assert children.wait(process) != 0 and not children.running
    assert children.start([sys.executable, "-c", "pass"]) is None
