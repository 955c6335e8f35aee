"""The plan's compute estimate: the UNet passes it predicts for a run are the passes the run makes,
in evaluation and in training, for every Stable Diffusion matcher."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from vlbench.compute import Work, run_work
from vlbench.config import load_run_config
from vlbench.runner import prepare, run

pytestmark = pytest.mark.usefixtures("offline")


# Each case trains (2 shots, 2 epochs) where the matcher trains, and scores 3 examples.
CASES = [
    ("dsd", {}),
    ("dsd-release", {"sampling_steps": 3, "train_timesteps": 2}),
    ("dsd-release", {"sampling_steps": 2, "denoising_gain": False, "include_uncond_attention": False}),
    ("diffusion-itm", {"sampling_steps": 3, "normalize": True}),
]


@pytest.fixture
def counted_passes(monkeypatch) -> Work:
    """UNet passes as the UNet sees them: a batch of b latents is b passes, a training pass one
    made with gradients on. Read `counted_passes[0]` after a run."""
    from diffusers import UNet2DConditionModel

    counts = [Work()]
    forward = UNet2DConditionModel.forward

    def counting(self, sample, *args, **kwargs):
        batch = sample.shape[0]
        counts[0] += Work(training=batch) if torch.is_grad_enabled() else Work(scoring=batch)
        return forward(self, sample, *args, **kwargs)

    monkeypatch.setattr(UNet2DConditionModel, "forward", counting)
    return counts


def predicted_and_counted(model: str, matcher: str, options: dict, counts: list[Work], runs_dir: Path, task: str = "mini-comvg", **overrides) -> tuple[Work, Work]:
    shots = 0 if matcher == "diffusion-itm" else 2
    values = {"task": task, "matcher": matcher, "model": model, "shots": shots, "limit": 3, "matcher_options": options, "runs_dir": str(runs_dir), "device": "cpu", **overrides}
    if values["shots"]:
        values["train"] = {"epochs": 2, "batch_size": 2}
    prepared = prepare(load_run_config(None, values))
    predicted = run_work(prepared, 0)
    counts[0] = Work()
    work = run(prepared, 0).results["timings"]["work"]
    assert Work(scoring=work["unet_passes_scoring"], training=work["unet_passes_training"]) == counts[0], "results.json counts what the UNet saw"
    return predicted, counts[0]


@pytest.mark.parametrize("matcher, options", CASES)
def test_predicted_passes_are_the_passes_a_mini_run_makes(tmp_path, counted_passes, matcher, options):
    predicted, counted = predicted_and_counted("mini", matcher, options, counted_passes, tmp_path)
    assert predicted == counted
    assert counted.scoring > 0 and (counted.training > 0) == (matcher != "diffusion-itm")


def test_predicted_passes_follow_the_candidates_of_each_example(tmp_path, counted_passes):
    """RefCOCOg's examples have one image and 10 texts, ComVG's two images and one text."""
    predicted, counted = predicted_and_counted("mini", "dsd", {"noise_levels": [0.5]}, counted_passes, tmp_path, task="mini-refcocog")
    assert predicted == counted == Work(scoring=3 * 10 + 2 * 10, training=2 * 2 * 10)


@pytest.mark.parametrize("matcher, options", [("dsd-release", {"sampling_steps": 2}), ("diffusion-itm", {"sampling_steps": 2, "normalize": True})])
def test_predicted_passes_count_a_job_repeated_across_examples_once(tmp_path, counted_passes, matcher, options):
    """The first 12 rows of the released ComVG csv repeat images and sentences across examples."""
    from placeholders import REAL_COMVG_CSV, comvg_root

    source = tmp_path / "source.csv"
    source.write_text("\n".join(REAL_COMVG_CSV.read_text().splitlines()[:13]) + "\n")
    root = comvg_root(tmp_path / "comvg", source)
    predicted, counted = predicted_and_counted("mini", matcher, options, counted_passes, tmp_path / "runs", task="comvg", shots=0, limit=None, data_root=str(root))
    per_example = 12 * 2 * (1 + 1) * 2  # examples × images × (text + unconditional) × timesteps
    assert predicted == counted and counted.scoring < per_example


@pytest.mark.parametrize("shots", [0, 4])
def test_predicted_passes_count_every_evaluated_pair_of_a_dsd_run_keeping_attention(tmp_path, counted_passes, shots):
    """Keeping attention maps, `dsd` scores every evaluated pair afresh: the first 12 rows' repeats
    do not cut its work (its training examples, kept no maps of, are scored as without them)."""
    from placeholders import REAL_COMVG_CSV, comvg_root

    source = tmp_path / "source.csv"
    source.write_text("\n".join(REAL_COMVG_CSV.read_text().splitlines()[:13]) + "\n")
    root = comvg_root(tmp_path / "comvg", source)
    predicted, counted = predicted_and_counted("mini", "dsd", {"noise_levels": [0.5]}, counted_passes, tmp_path / "runs", task="comvg", shots=shots, limit=None, data_root=str(root), save_attention=True)
    assert predicted == counted
    if not shots:
        assert counted == Work(scoring=12 * 2)  # examples × images × one text × one level


@pytest.fixture(scope="module")
def sd21_model(tmp_path_factory) -> str:
    """A Stable Diffusion 2.1-base-shaped checkpoint with random weights and 16×16 latents."""
    import os

    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    cache = os.environ["VLBENCH_CACHE"]
    os.environ["VLBENCH_CACHE"] = str(tmp_path_factory.mktemp("sd21"))
    try:
        from sd21 import sd21_random

        return str(sd21_random(16))
    finally:
        os.environ["VLBENCH_CACHE"] = cache
        sys.path.pop(0)


@pytest.mark.slow
@pytest.mark.parametrize("matcher, options", CASES[:2] + CASES[3:])
def test_predicted_passes_are_the_passes_a_run_makes_on_the_sd21_shaped_unet(tmp_path, sd21_model, counted_passes, matcher, options):
    """At batch 1 (`unet_batch: 1`); the mini test covers the same counting fast."""
    predicted, counted = predicted_and_counted(sd21_model, matcher, {**options, "unet_batch": 1}, counted_passes, tmp_path)
    assert predicted == counted
