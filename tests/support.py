"""Test-only components, registered at run time (`vlbench.registry.*.register`)."""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass
from pathlib import Path

from vlbench.metrics import image_choice_correct
from vlbench.types import Example, ImageRef, Matcher, Task


@dataclass
class CountingOptions:
    log: str = ""
    nan_key: str = ""
    gate: str = ""  # a directory: after `pause_after` scoring calls, wait until `<gate>/open` exists
    pause_after: int = 0


class CountingMatcher(Matcher):
    """Scores a pair by text length minus image key length; appends each example's first image
    key to `log` (one line per scoring call). An example whose first image key is `nan_key` gets
    NaN scores. With `gate`, the process stops before its scoring call number `pause_after + 1`,
    leaves `<gate>/waiting-<pid>` and goes on once the test creates `<gate>/open`: tests act on a
    run at a known point instead of guessing how long it takes."""

    name = "counting"
    summary = "Test matcher that logs every scoring call."
    Options = CountingOptions

    def __init__(self, options, runtime):
        super().__init__(options, runtime)
        self.calls = 0

    def score(self, images, texts):
        import torch

        if self.options.gate and self.calls == self.options.pause_after:
            wait_at_gate(Path(self.options.gate))
        self.calls += 1
        if self.options.log:
            with open(self.options.log, "a") as handle:
                handle.write(images[0].key + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        if images[0].key == self.options.nan_key:
            return torch.full((len(images), len(texts)), float("nan"))
        return torch.tensor([[float(len(text) - len(image.key)) for text in texts] for image in images])


class TinyFilesTask(Task):
    """Reads `<root>/pairs.csv` (`id,text,pos_image,neg_image`) with images under `<root>/images/`."""

    name = "tiny-files"
    summary = "Test task reading a csv and image files."

    def examples(self, seed):
        root = self.require_data_root()
        with open(root / "pairs.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        return [
            Example(row["id"], (ImageRef(row["pos_image"], root / "images" / row["pos_image"]), ImageRef(row["neg_image"], root / "images" / row["neg_image"])), (row["text"],), ((0, 0),), {})
            for row in rows
        ]

    def outcomes(self, scores, positives):
        (image, text), = positives
        return {"accuracy": image_choice_correct(scores, image, text)}

    def describe(self):
        return "<root>/pairs.csv (id,text,pos_image,neg_image) and <root>/images/<name>"


def wait_at_gate(gate: Path) -> None:
    """Announce this process at `gate`, then block until the test opens it."""
    (gate / f"waiting-{os.getpid()}").touch()
    while not (gate / "open").exists():
        time.sleep(0.01)


def wait_until_paused(gate: Path, count: int, processes) -> None:
    """Block until `count` processes wait at `gate`; fail at once if one of `processes` exits first."""
    while len(list(gate.glob("waiting-*"))) < count:
        ended = [process for process in processes if process.poll() is not None]
        if ended:
            raise AssertionError(f"a process ended (exit code {ended[0].returncode}) before {count} reached the gate {gate}")
        time.sleep(0.01)


def open_gate(gate: Path) -> None:
    (gate / "open").touch()


def counting_optimizer_steps(make_optimizer, steps: list[int], interrupt_at: int | None = None):
    """`make_optimizer` whose optimisers append to `steps` at each step; Ctrl-C arrives at step `interrupt_at`."""

    def counted(parameters, train):
        optimizer = make_optimizer(parameters, train)
        step = optimizer.step

        def counted_step():
            steps.append(1)
            if len(steps) == interrupt_at:
                raise KeyboardInterrupt
            return step()

        optimizer.step = counted_step
        return optimizer

    return counted


def results_record(task: str, matcher: str, config_id: str, shots: str, seed: int, metrics: dict, breakdown: dict, n: int, model=None, headline=None, limit=None, n_eval=None) -> dict:
    """A `results.json` document with the fields the readers need, for hand-made run records."""
    return {
        "schema_version": 2,
        "config_id": config_id,
        "task": {"name": task, "version": "1", "options": {}, "headline": headline or next(iter(metrics))},
        "matcher": {"name": matcher, "fingerprint": {"name": matcher, "model": model, "options": {}}, "trained": shots != "0"},
        "protocol": {"split": "grouped", "shots": shots, "seed": seed, "n_train": 0, "n_eval": n_eval or n, "dropped_for_shared_images": 0, "split_sha256": f"split-{shots}-{seed}", "limit": limit, "train": None},
        "n": n,
        "metrics": metrics,
        "breakdown": breakdown,
        "skipped": [],
        "timings": {"examples_resumed": 0, "examples_scored": n},
        "provenance": {"sessions": []},
    }


def hub_repository(hub: Path, name: str, files: dict[str, bytes], revision: str) -> None:
    """A Hugging Face hub cache entry (under `hub`, a `HF_HUB_CACHE`) for repository `name` at
    `revision`, its `main`, holding `files` (path in the repository → bytes)."""
    root = hub / f"models--{name.replace('/', '--')}"
    snapshot = root / "snapshots" / revision
    for file_name, content in files.items():
        (snapshot / file_name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / file_name).write_bytes(content)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(revision)


def register_all() -> None:
    from vlbench import registry

    registry.matchers.register("counting", CountingMatcher, origin="tests")
    registry.tasks.register("tiny-files", TinyFilesTask, origin="tests")


class LengthHead(Matcher):
    """Scores (text length + image key length) through a trained linear layer; `width` copies of it in."""

    name = "length-head"
    summary = "Test matcher: a trained linear head over text lengths."
    trainable = True
    width = 1

    def __init__(self, options, runtime):
        import torch

        super().__init__(options, runtime)
        self.trained = torch.nn.Linear(self.width, 1)

    def score(self, images, texts):
        import torch

        lengths = torch.tensor([[float(len(text) + len(image.key))] * self.width for image in images for text in texts])
        return self.trained(lengths).view(len(images), len(texts))


def registered(monkeypatch, matcher) -> None:
    """`matcher` (a class) registered under its name for one test."""
    from vlbench import registry
    from vlbench.registry import Entry

    monkeypatch.setitem(registry.matchers._discover(), matcher.name, Entry(matcher.name, f"tests:{matcher.__name__}", "tests", "tests", None, matcher))
