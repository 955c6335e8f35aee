"""Multi-process runs on the CPU (gloo): the same metrics as one process, each example scored once."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TESTS, vlbench_cli
from support import open_gate, wait_until_paused


ENVIRONMENT = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}


def torchrun_command(processes: int, *args: str, module: bool = False) -> list[str]:
    """`torchrun --standalone --nproc-per-node N` on tests/launch.py (test components registered), or with `module` on `-m vlbench`."""
    target = ["-m", "vlbench"] if module else [str(TESTS / "launch.py")]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", *target, *args]


def torchrun(processes: int, *args: str, cwd: Path, module: bool = False, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(torchrun_command(processes, *args, module=module), cwd=cwd, env=ENVIRONMENT, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"torchrun {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def counting_args(tmp_path: Path, n_examples: int, pause_after: int | None = None) -> list[str]:
    """A colors run with the counting matcher; with `pause_after`, each process waits at the gate
    `tmp_path/gate` after that many scoring calls."""
    options = {"log": str(tmp_path / "calls.log")}
    if pause_after is not None:
        (tmp_path / "gate").mkdir(exist_ok=True)
        options.update(gate=str(tmp_path / "gate"), pause_after=pause_after)
    (tmp_path / "run.yaml").write_text(json.dumps({"task_options": {"n_examples": n_examples}, "matcher_options": options}))
    return ["run", "--task", "colors", "--matcher", "counting", "--config", str(tmp_path / "run.yaml")]


def results_of(runs: Path) -> dict:
    (path,) = runs.rglob("results.json")
    return json.loads(path.read_text())


def scored_ids(run_dir: Path) -> list[str]:
    return [json.loads(line)["id"] for path in sorted(run_dir.glob("scores*.jsonl")) for line in path.read_text().splitlines() if line.endswith("}")]


def logged_examples(tmp_path: Path) -> list[str]:
    # The counting matcher logs the first image key, "<index>-0", of example "colors-<index>".
    return [f"colors-{key.split('-')[0]}" for key in (tmp_path / "calls.log").read_text().splitlines()]


@pytest.mark.parametrize(("processes", "n_examples"), [(2, 40), (3, 41)])
def test_ranks_score_each_example_once_and_match_one_process(tmp_path, processes, n_examples):
    args = counting_args(tmp_path, n_examples)
    torchrun(processes, *args, "--runs-dir", "ranked", cwd=tmp_path)
    calls = logged_examples(tmp_path)
    assert sorted(calls) == sorted(f"colors-{index}" for index in range(n_examples))

    (tmp_path / "calls.log").unlink()
    vlbench_cli(*args, "--runs-dir", "single", cwd=tmp_path)
    ranked, single = results_of(tmp_path / "ranked"), results_of(tmp_path / "single")
    assert ranked["metrics"] == single["metrics"] and ranked["breakdown"] == single["breakdown"]
    assert ranked["n"] == n_examples and ranked["provenance"]["sessions"][-1]["processes"] == processes
    (run_dir,) = {path.parent for path in (tmp_path / "ranked").rglob("results.json")}
    assert sorted(scored_ids(run_dir)) == sorted(logged_examples(tmp_path)), "merged shards hold each example once"
    assert not list(run_dir.glob("*.rank-*")), "rank 0 merged and removed the shards"
    examples = [json.loads(line) for line in (run_dir / "examples.jsonl").read_text().splitlines()]
    assert sorted(example["id"] for example in examples) == sorted(scored_ids(run_dir))
    thumbnails = [json.loads(line)["id"] for line in (run_dir / "thumbnails.jsonl").read_text().splitlines()]
    assert sorted(thumbnails) == sorted({image["key"] for example in examples for image in example["images"]}), "one thumbnail per image"


def test_a_rank_killed_halfway_resumes_without_rescoring(tmp_path):
    # Batches of one example: each rank has appended 5 scores when it stops at the gate.
    args = [*counting_args(tmp_path, 40, pause_after=5), "--runs-dir", "killed", "--batch-size", "1"]
    launcher = subprocess.Popen(torchrun_command(2, *args), cwd=tmp_path, env=ENVIRONMENT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until_paused(tmp_path / "gate", 2, [launcher])
    os.kill(max(_children(launcher.pid)), signal.SIGKILL)  # one rank dies; the launcher stops the other
    assert launcher.wait() != 0
    run_dir = _run_dir(tmp_path / "killed")
    stored_at_kill = set(scored_ids(run_dir))
    assert len(stored_at_kill) == 10
    calls_before = len(logged_examples(tmp_path))
    open_gate(tmp_path / "gate")

    torchrun(2, *args, cwd=tmp_path)
    rescored = logged_examples(tmp_path)[calls_before:]
    assert len(rescored) == 40 - len(stored_at_kill) and not set(rescored) & stored_at_kill
    assert sorted(scored_ids(run_dir)) == sorted(f"colors-{index}" for index in range(40))

    vlbench_cli(*args[:-4], "--runs-dir", "clean", cwd=tmp_path)
    killed, clean = results_of(tmp_path / "killed"), results_of(tmp_path / "clean")
    assert killed["metrics"] == clean["metrics"] and killed["breakdown"] == clean["breakdown"] and killed["n"] == 40


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _run_dir(runs: Path) -> Path:
    found = list(runs.glob("*/*/*/seed-0"))
    return found[0] if found else runs


@pytest.mark.parametrize("processes", [2, 3])
def test_data_parallel_training_matches_one_process(tmp_path, processes):
    """clip-ft trains without noise, so ranks that each score their share of every batch (3/3/2
    of a batch of 8 with three ranks) and sum gradients reach the one-process parameters up to
    float summation order."""
    import torch

    args = ["run", "--task", "mini-comvg", "--matcher", "clip-ft", "--model", "mini", "--shots", "5%", "--limit", "60"]
    torchrun(processes, *args, "--runs-dir", "ranked", cwd=tmp_path, module=True)
    vlbench_cli(*args, "--runs-dir", "single", cwd=tmp_path)
    ranked, single = results_of(tmp_path / "ranked"), results_of(tmp_path / "single")
    assert ranked["metrics"] == single["metrics"]
    (ranked_state,), (single_state,) = (list((tmp_path / name).rglob("state.pt")) for name in ("ranked", "single"))
    ranked_state, single_state = torch.load(ranked_state), torch.load(single_state)
    assert ranked_state.keys() == single_state.keys()
    for name, value in single_state.items():
        torch.testing.assert_close(ranked_state[name], value, rtol=0, atol=1e-6)


def test_an_interrupted_data_parallel_training_resumes_from_its_checkpoint_on_every_rank(tmp_path):
    """Two ranks checkpoint at each epoch's end (rank 0 writes, every rank's streams in it), stop at
    the same step of the second epoch, and resume to the state an uninterrupted pair of ranks ends with."""
    import torch

    args = ["run", "--task", "mini-comvg", "--matcher", "clip-ft", "--model", "mini", "--shots", "5%", "--limit", "20", "--config", "train.yaml"]
    (tmp_path / "train.yaml").write_text("train: {epochs: 3}\n")

    def launch(interrupt_at: int, runs: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(TESTS / "launch_interrupted_training.py"), str(interrupt_at), *args, "--runs-dir", runs]
        return subprocess.run(command, cwd=tmp_path, env=ENVIRONMENT, capture_output=True, text=True)

    assert launch(0, "clean").returncode == 0
    stopped = launch(6, "interrupted")
    assert stopped.returncode != 0 and "1 of 3 epochs are kept" in stopped.stderr, stopped.stderr
    (checkpoint,) = (tmp_path / "interrupted").rglob("training-checkpoint.pt")
    assert len(torch.load(checkpoint, weights_only=True)["random"]) == 2
    resumed = launch(0, "interrupted")
    assert resumed.returncode == 0 and "training (resumed after epoch 1)" in resumed.stderr, resumed.stderr
    assert not checkpoint.exists()
    (clean_state,), (resumed_state,) = (list((tmp_path / name).rglob("state.pt")) for name in ("clean", "interrupted"))
    clean_state, resumed_state = torch.load(clean_state), torch.load(resumed_state)
    assert clean_state.keys() == resumed_state.keys() and all(torch.equal(clean_state[name], resumed_state[name]) for name in clean_state)
    assert results_of(tmp_path / "clean")["metrics"] == results_of(tmp_path / "interrupted")["metrics"]


def test_accelerate_launch_runs_the_same_command(tmp_path):
    args = ["run", "--task", "mini-comvg", "--matcher", "clip", "--model", "mini", "--limit", "30"]
    # `--multi_gpu` is accelerate's torchrun launcher; it runs gloo processes on a CPU-only machine.
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", str(free_port()), "-m", "vlbench", *args, "--runs-dir", "ranked"]
    launched = subprocess.run(launch, cwd=tmp_path, env=ENVIRONMENT, capture_output=True, text=True)
    assert launched.returncode == 0, launched.stderr
    vlbench_cli(*args, "--runs-dir", "single", cwd=tmp_path)
    ranked, single = results_of(tmp_path / "ranked"), results_of(tmp_path / "single")
    assert ranked["metrics"] == single["metrics"] and ranked["provenance"]["sessions"][-1]["processes"] == 2


def test_a_second_launch_on_a_running_run_is_refused_on_every_rank(tmp_path):
    # The first run holds the run's lock while it waits at the gate, before its first score.
    args = [*counting_args(tmp_path, 40, pause_after=0), "--runs-dir", "runs"]
    first = subprocess.Popen([sys.executable, str(TESTS / "launch.py"), *args], cwd=tmp_path, env=ENVIRONMENT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_paused(tmp_path / "gate", 1, [first])
        second = torchrun(2, *args, cwd=tmp_path, check=False)
    finally:
        open_gate(tmp_path / "gate")
        _, first_errors = first.communicate()
    assert second.returncode != 0
    refusals = [line for line in second.stderr.splitlines() if line.startswith("error: another process is already running this run")]
    assert len(refusals) == 2, second.stderr
    assert first.returncode == 0, first_errors
    assert len(scored_ids(_run_dir(tmp_path / "runs"))) == 40


def test_a_node_reading_other_data_than_rank_0_s_is_refused_on_every_rank_before_anything_is_stored(tmp_path):
    """Two nodes (two torchrun agents on this machine, one process each), each with its own copy of
    the ComVG data root at the same relative path, one image replaced on the second: rank 0's
    fingerprint alone would have let the second node's scores in under it."""
    import shutil
    import socket

    from placeholders import REAL_COMVG_CSV, comvg_root

    comvg_root(tmp_path / "node-0" / "data", REAL_COMVG_CSV)
    shutil.copytree(tmp_path / "node-0" / "data", tmp_path / "node-1" / "data")
    image = sorted((tmp_path / "node-1" / "data" / "vg_concept").iterdir())[0]
    shutil.copy(sorted((tmp_path / "node-1" / "data" / "vg_concept").iterdir())[1], image)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1", f"--node-rank={node}", "--master-addr=127.0.0.1", f"--master-port={port}",
             "-m", "vlbench", "run", "--task", "comvg", "--matcher", "random", "--data-root", "data", "--runs-dir", str(tmp_path / "runs")],
            cwd=tmp_path / f"node-{node}", env=ENVIRONMENT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for node in (0, 1)
    ]
    errors = [node.communicate()[1] for node in nodes]
    assert all(node.returncode != 0 for node in nodes), errors
    for error in errors:
        (refusal,) = [line for line in error.splitlines() if line.startswith("error: the processes of this run read different data")]
        assert "the data of task 'comvg' has fingerprint" in refusal and "on rank 1 (on " in refusal, refusal
    assert not list((tmp_path / "runs").rglob("*.jsonl"))


def test_a_collective_broken_by_another_process_stopping_ends_this_one_with_one_line(monkeypatch):
    import torch.distributed as dist

    from vlbench.distributed import Ranks
    from vlbench.errors import VlbenchError

    def closed(*args, **kwargs):
        raise RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:40283\nException raised from ...")

    monkeypatch.setattr(dist, "all_gather_object", closed)
    with pytest.raises(VlbenchError, match=r"^a collective operation with the other processes of this run failed: another process stopped \(its own error says why\) or it timed out \(RuntimeError: \[.*pair.cc:561\] Connection closed by peer \[127.0.0.1\]:40283\); what the run stored is kept: run the same command to resume$"):
        Ranks(rank=0, world_size=2).gather({})
