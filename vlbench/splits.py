"""Seeded few-shot splits, shared by every matcher with the same (task, shots, seed, protocol).

- A task with a train pool (an official train split, or a training file): the few-shot examples
  are drawn from it; evaluation examples that show an image of a drawn training example leave the
  evaluation side (RefCOCOg's Google split divides objects, not images), counted like the grouped
  split's.
- A task without one (`grouped`, the default): images are drawn in a seeded order and an example
  joins the training side once all its images are drawn; examples that share an image with the
  training side leave the evaluation side, so no evaluation image is seen in training. The
  split records how many examples that drops.
- `paper-release`: the first rows train and the rest evaluate, as the released DSD code does on
  RefCOCOg (all refs of all splits). Training and evaluation then share images; offered only to
  reproduce the paper, and only on tasks whose evaluation pool the release cut this way
  (`Task.release_cut`).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vlbench.config import Shots
from vlbench.errors import VlbenchError
from vlbench.types import Example


@dataclass(frozen=True)
class Split:
    """Training and evaluation example ids, with how they were made."""

    train_ids: tuple[str, ...]
    eval_ids: tuple[str, ...]
    protocol: str
    shots: str
    seed: int
    dropped: int = 0

    @property
    def sha256(self) -> str:
        payload = json.dumps([self.train_ids, self.eval_ids], separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()

    def summary(self) -> dict[str, Any]:
        """How the split was made and its sizes, without the ids."""
        return {
            "split": self.protocol,
            "shots": self.shots,
            "seed": self.seed,
            "n_train": len(self.train_ids),
            "n_eval": len(self.eval_ids),
            "dropped_for_shared_images": self.dropped,
            "split_sha256": self.sha256,
        }

    def to_record(self) -> dict[str, Any]:
        """The content of `split.json`."""
        return {**self.summary(), "train_ids": list(self.train_ids), "eval_ids": list(self.eval_ids)}


def make_split(
    task_name: str,
    pool: list[Example],
    train_pool: list[Example] | None,
    shots: Shots,
    seed: int,
    protocol: str,
) -> Split:
    """The few-shot split of `pool` (the evaluation examples) for this seed. Call
    `check_protocol` first: this assumes the protocol applies."""
    if shots.is_zero:
        return Split((), _ids(pool), protocol, shots.label(), seed)
    rng = random.Random(f"vlbench-split:{task_name}:{seed}")
    if train_pool is not None:
        size = _checked_size(shots, len(train_pool), len(train_pool), "the task's train pool")
        chosen = [train_pool[i] for i in sorted(rng.sample(range(len(train_pool)), size))]
        seen = {key for example in chosen for key in example.picture_keys}
        evaluation = [example.id for example in pool if not seen.intersection(example.picture_keys)]
        if not evaluation:
            raise VlbenchError(f"--shots {shots.label()}: every evaluation example shows an image of a drawn training example; ask for fewer shots")
        return Split(_ids(chosen), tuple(evaluation), protocol, shots.label(), seed, len(pool) - len(evaluation))
    size = _checked_size(shots, len(pool), len(pool) - 1, "the evaluation pool")
    if protocol == "paper-release":
        return Split(_ids(pool[:size]), _ids(pool[size:]), protocol, shots.label(), seed)
    return _grouped_by_image(pool, size, rng, protocol, shots.label(), seed)


def check_protocol(task_name: str, release_cut: bool, has_train_pool: bool, shots: Shots, protocol: str) -> None:
    """Refuse `paper-release` where it would not do what it records: on a task the released code
    does not cut positionally, on a task (or task options) with a train pool, and without shots."""
    if protocol != "paper-release":
        return
    if not release_cut:
        raise VlbenchError(
            f"--split paper-release: the released DSD code does not cut the evaluation rows of task '{task_name}' into training "
            "and evaluation (it trains on separate files, or cannot run this task); leave --split out"
            + ("" if task_name not in ("comvg", "vqav2") else ", and give the release's training csv as the task option train_file")
        )
    if has_train_pool:
        raise VlbenchError(f"--split paper-release: task '{task_name}' trains on its train pool with these options, so the release's cut of the evaluation rows has no meaning; leave --split out")
    if shots.is_zero:
        raise VlbenchError("--split paper-release: with --shots 0 nothing is cut off for training; leave --split out")


def _grouped_by_image(pool, size, rng, protocol, shots_label, seed) -> Split:
    images = sorted({key for example in pool for key in example.picture_keys})
    rng.shuffle(images)
    train: set[str] = set()
    missing = {example.id: set(example.picture_keys) for example in pool}
    examples_by_image: dict[str, list[str]] = {}
    for example in pool:
        for key in set(example.picture_keys):
            examples_by_image.setdefault(key, []).append(example.id)
    for image in images:
        if len(train) >= size:
            break
        for example_id in examples_by_image[image]:
            missing[example_id].discard(image)
            if not missing[example_id] and len(train) < size:
                train.add(example_id)
    seen = {key for example in pool if example.id in train for key in example.picture_keys}
    evaluation = [e.id for e in pool if e.id not in train and not seen.intersection(e.picture_keys)]
    if not evaluation:
        raise VlbenchError(
            f"--shots {shots_label}: no evaluation example is left once training images are "
            f"removed; ask for fewer shots"
        )
    dropped = len(pool) - len(train) - len(evaluation)
    train_ids = tuple(e.id for e in pool if e.id in train)
    return Split(train_ids, tuple(evaluation), protocol, shots_label, seed, dropped)


LIMIT_SAMPLE = "by-id"  # how `--limit` samples, recorded in a limited run's configuration and results


def evaluation_ids(eval_ids: Sequence[str], limit: int | None, seed: int, sample: str = LIMIT_SAMPLE) -> list[str]:
    """The evaluation examples a run scores: all of `eval_ids`, or with `limit` a sample of that
    many, kept in split order. A sample, not the first rows: files are often sorted by kind
    (ComVG's first 1,536 rows are all subject swaps). `by-id` takes the examples whose seeded hash
    of their id is smallest, so samples of one seed are nested: a 5% run's sample holds every
    example of its zero-shot run's sample that it evaluates (all but those it trained on or dropped
    for showing a training image), and
    the two pair for a bootstrap. `positions` is how runs stored before it sampled: positions
    drawn from this pool, so a zero-shot and a 5% run's samples barely overlapped."""
    if limit is None or limit >= len(eval_ids):
        return list(eval_ids)
    if sample == "positions":
        chosen = sorted(random.Random(f"vlbench-limit:{seed}").sample(range(len(eval_ids)), limit))
        return [eval_ids[index] for index in chosen]
    if sample != LIMIT_SAMPLE:
        raise VlbenchError(f"unknown --limit sample '{sample}' in a stored run (this vlbench knows {LIMIT_SAMPLE} and positions)")
    kept = set(sorted(eval_ids, key=lambda example_id: hashlib.blake2b(f"vlbench-limit:{seed}:{example_id}".encode(), digest_size=8).digest())[:limit])
    return [example_id for example_id in eval_ids if example_id in kept]


def _checked_size(shots: Shots, pool_size: int, most: int, pool_name: str) -> int:
    size = shots.size(pool_size)
    if size > most:
        raise VlbenchError(
            f"--shots {shots.label()}: asks for {size} training examples but {pool_name} has "
            f"{pool_size} examples; ask for at most {most}"
        )
    return size


def _ids(examples: list[Example]) -> tuple[str, ...]:
    return tuple(example.id for example in examples)
