"""Results of scoring jobs kept across a run's examples, so a UNet job is computed once.

Outside training a job's result is a function of its key alone — (image content, condition text,
timestep) — while the weights stay fixed: its latent is seeded by (run seed, image, timestep), its
noise by (run seed, timestep), and the UNet treats each job on its own. Real ComVG repeats images
and sentences across its examples (5,400 examples, 3,201 distinct pairs, 524 images), and the
unconditional branch of an image is the same for every text. The results are small (a few
numbers per job), so each process keeps them for its whole run (torchrun ranks keep their own,
and a resumed run starts empty); they are dropped whenever the trained
weights change (`for_weights`: a hash of the trained state, checked per scoring batch, so even a
parameter changed in place is noticed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Mapping, Sequence

import torch


def distinct_jobs(examples, extra_conditions: Sequence[str]) -> int:
    """How many distinct (image, condition) jobs per timestep scoring `examples` takes, each
    example's texts and `extra_conditions` (the unconditional "") being its conditions: the passes
    of one process scoring them from scratch. Images are told apart by key, which names their
    content within a task (scoring tells them apart by pixels, so two keys of identical pixels
    would make it count fewer)."""
    return len({(image.key, condition) for example in examples for image in example.images for condition in (*example.texts, *extra_conditions)})


class JobResults:
    """Per-job result rows by key. `ensure(keys, compute)` computes the keys not kept yet;
    `rows(keys)` then stacks the kept rows. Rows stay in the blocks `compute` returned, so a
    million jobs cost a dict entry each, not a tensor each."""

    def __init__(self) -> None:
        self.blocks: list[torch.Tensor] = []
        self.where: dict[Hashable, tuple[int, int]] = {}  # key -> (block, row)
        self.weights: str | None = None  # hash of the trained state the kept rows were computed with

    def for_weights(self, state: Mapping[str, torch.Tensor]) -> JobResults:
        """These results, emptied first if `state` (the matcher's trained tensors) is not the
        state they were computed with."""
        digest = hashlib.blake2b(digest_size=16)
        for name in sorted(state):
            digest.update(name.encode())
            digest.update(state[name].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # 0-d tensors too
        if digest.hexdigest() != self.weights:
            self.clear()
            self.weights = digest.hexdigest()
        return self

    def ensure(self, keys: Sequence[Hashable], compute: Callable[[list[Hashable]], torch.Tensor]) -> None:
        """Keep the rows of `keys`: `compute(missing keys)` (distinct, in first-seen order) returns
        the rows of those not kept yet."""
        missing = [key for key in dict.fromkeys(keys) if key not in self.where]
        if missing:
            block = compute(missing)
            self.where.update((key, (len(self.blocks), row)) for row, key in enumerate(missing))
            self.blocks.append(block)

    def rows(self, keys: Sequence[Hashable]) -> torch.Tensor:
        """`[len(keys), ...]`: the kept rows of `keys`."""
        return torch.stack([self.blocks[block][row] for block, row in (self.where[key] for key in keys)])

    def clear(self) -> None:
        self.blocks.clear()
        self.where.clear()
