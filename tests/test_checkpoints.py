"""An interrupted training resumes from its last checkpoint and ends bit-identical to an
uninterrupted one; a checkpoint resumes only the training that wrote it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from vlbench import checkpoints, training
from vlbench.config import load_run_config
from vlbench.errors import Interrupted, VlbenchError
from vlbench.runner import prepare, run

from support import counting_optimizer_steps

# mini ComVG at 5%: 30 training examples, batch 8, so 4 optimiser steps an epoch.
RUNS = {
    "clip-ft": {"train": {"epochs": 4}},
    "dsd": {"train": {"epochs": 3}, "matcher_options": {"noise_levels": [0.4]}},  # one noise level: a quarter of the UNet passes
}


def mini_run(runs_dir: Path, matcher: str):
    values = {"task": "mini-comvg", "matcher": matcher, "model": "mini", "shots": "5%", "limit": 10, "runs_dir": str(runs_dir), **RUNS[matcher]}
    return run(prepare(load_run_config(None, values)), 0)


def counting_steps(monkeypatch, interrupt_at: int | None = None) -> list[int]:
    """Count optimiser steps from now on; with `interrupt_at`, Ctrl-C arrives at that step."""
    steps: list[int] = []
    monkeypatch.setattr(training, "make_optimizer", counting_optimizer_steps(training.make_optimizer, steps, interrupt_at))
    return steps


@pytest.mark.parametrize("matcher", list(RUNS))
def test_an_interrupted_training_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_one(tmp_path, monkeypatch, matcher):
    clean = mini_run(tmp_path / "clean", matcher)
    epochs = RUNS[matcher]["train"]["epochs"]

    monkeypatch.setattr(checkpoints, "CHECKPOINT_SECONDS", 0.0)  # a checkpoint at every epoch's end
    counting_steps(monkeypatch, interrupt_at=6)  # in the second epoch
    with pytest.raises(Interrupted, match=f"1 of {epochs} epochs are kept"):
        mini_run(tmp_path / "interrupted", matcher)
    (checkpoint,) = (tmp_path / "interrupted").rglob("training-checkpoint.pt")

    resumed_steps = counting_steps(monkeypatch)
    resumed = mini_run(tmp_path / "interrupted", matcher)
    assert len(resumed_steps) == 4 * (epochs - 1)  # the first epoch is not trained again
    assert not checkpoint.exists()
    trained = [torch.load(result.run_dir / "state.pt", weights_only=True) for result in (clean, resumed)]
    assert trained[0].keys() == trained[1].keys() and all(torch.equal(trained[0][key], trained[1][key]) for key in trained[0])
    assert (clean.run_dir / "scores.jsonl").read_text() == (resumed.run_dir / "scores.jsonl").read_text()
    assert clean.results["metrics"] == resumed.results["metrics"]
    sessions = resumed.results["provenance"]["sessions"]
    assert [(session["ended"], session.get("training_epochs_checkpointed"), session["trained"]) for session in sessions] == [("interrupted", 1, False), ("completed", None, True)]


def test_a_checkpoint_resumes_only_on_the_compute_that_wrote_it_and_restart_discards_it(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "CHECKPOINT_SECONDS", 0.0)
    counting_steps(monkeypatch, interrupt_at=6)
    with pytest.raises(Interrupted):
        mini_run(tmp_path, "clip-ft")
    (checkpoint,) = tmp_path.rglob("training-checkpoint.pt")
    state = torch.load(checkpoint, weights_only=True)
    threads = state["random"][0]["compute"]["threads"]
    state["random"][0]["compute"]["threads"] = threads + 1
    torch.save(state, checkpoint)

    counting_steps(monkeypatch)
    with pytest.raises(VlbenchError) as refused:
        mini_run(tmp_path, "clip-ft")
    assert re.search(rf"written on cpu \(.*, {threads + 1} threads?\) cannot resume on cpu \(.*, {threads} threads?\)", str(refused.value)), refused.value
    assert f"resume it with OMP_NUM_THREADS={threads + 1} (`vlbench suite run --jobs N` sets it to the cores over N), or delete it (or --restart) to train from the start" in str(refused.value)
    assert checkpoint.exists()

    state["random"][0]["compute"] = {**state["random"][0]["compute"], "threads": threads, "device": {**state["random"][0]["compute"]["device"], "cpu": "Another CPU"}}
    torch.save(state, checkpoint)  # another machine's processor: its kernels round otherwise, whatever the threads
    with pytest.raises(VlbenchError, match=r"written on cpu \(Another CPU, .* cannot resume on cpu \(.*\(it would not end as one uninterrupted training\); delete it \(or --restart\)"):
        mini_run(tmp_path, "clip-ft")

    steps = counting_steps(monkeypatch)
    values = {"task": "mini-comvg", "matcher": "clip-ft", "model": "mini", "shots": "5%", "limit": 10, "runs_dir": str(tmp_path), "restart": True, **RUNS["clip-ft"]}
    run(prepare(load_run_config(None, values)), 0)
    assert len(steps) == 16 and not checkpoint.exists()


def test_a_checkpoint_copied_from_another_run_is_refused(tmp_path, monkeypatch):
    """As `state.pt` is tied to its run and split: another configuration's training (here one
    evaluating another `--limit`, with the same training examples and options) would otherwise go on from it."""
    monkeypatch.setattr(checkpoints, "CHECKPOINT_SECONDS", 0.0)
    counting_steps(monkeypatch, interrupt_at=6)
    with pytest.raises(Interrupted):
        mini_run(tmp_path / "a", "clip-ft")
    (source,) = (tmp_path / "a").rglob("training-checkpoint.pt")
    counting_steps(monkeypatch, interrupt_at=1)  # before the first checkpoint: the run and split are recorded, nothing trained kept
    other = {"task": "mini-comvg", "matcher": "clip-ft", "model": "mini", "shots": "5%", "limit": 12, "runs_dir": str(tmp_path / "b"), **RUNS["clip-ft"]}
    with pytest.raises(Interrupted):
        run(prepare(load_run_config(None, other)), 0)
    (run_dir,) = {path.parent for path in (tmp_path / "b").rglob("identity.json")}
    (run_dir / "training-checkpoint.pt").write_bytes(source.read_bytes())
    counting_steps(monkeypatch)
    with pytest.raises(VlbenchError, match=r"training-checkpoint\.pt: a training checkpoint written for another run or split \(copied from another run directory\?\); --restart to train from the start"):
        run(prepare(load_run_config(None, other)), 0)


def test_an_interrupt_before_the_first_checkpoint_says_nothing_trained_is_kept(tmp_path, monkeypatch):
    counting_steps(monkeypatch, interrupt_at=2)
    with pytest.raises(Interrupted, match=r"^interrupted while training, before its first checkpoint \(nothing trained is kept\)"):
        mini_run(tmp_path, "clip-ft")
