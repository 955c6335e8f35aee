"""The shared few-shot training loop: any matcher whose `score` is differentiable can use it."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from vlbench.progress import progress_bar

if TYPE_CHECKING:
    from vlbench.types import Example, Matcher


@dataclass
class TrainConfig:
    """Optimisation settings of the protocol; a matcher may change the defaults."""

    loss: Literal["bce", "ce", "hinge"] = "bce"
    epochs: int = 5
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 8
    margin: float = 0.1
    grad_clip: float | None = 1.0


def fit_by_scores(matcher: Matcher, examples: Sequence[Example], train: TrainConfig, load_images: Callable) -> None:
    """AdamW on `matcher.trainable_parameters()`, minimising the protocol loss of `matcher.score`.

    Examples are shuffled each epoch by a generator seeded from the run's seed; a step averages
    the loss over `train.batch_size` examples.
    """
    import torch

    from vlbench.losses import example_loss

    parameters = matcher.trainable_parameters()
    optimizer = torch.optim.AdamW(parameters, lr=train.lr, weight_decay=train.weight_decay)
    rng = random.Random(f"vlbench-train:{matcher.runtime.seed}")
    order = list(examples)
    steps_per_epoch = -(-len(order) // train.batch_size)
    with progress_bar("training", total=train.epochs * steps_per_epoch) as advance:
        for _ in range(train.epochs):
            rng.shuffle(order)
            for start in range(0, len(order), train.batch_size):
                batch = order[start : start + train.batch_size]
                losses = [
                    example_loss(matcher.score(load_images(example), example.texts), example.positives, train.loss, train.margin)
                    for example in batch
                ]
                loss = torch.stack(losses).mean()
                optimizer.zero_grad()
                loss.backward()
                if train.grad_clip:
                    torch.nn.utils.clip_grad_norm_(parameters, train.grad_clip)
                optimizer.step()
                advance(1)
