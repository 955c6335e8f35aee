"""The shared few-shot training loop: any matcher whose `score` is differentiable can use it."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from vlbench import checkpoints
from vlbench.errors import VlbenchError
from vlbench.progress import progress_bar

if TYPE_CHECKING:
    from vlbench.types import Example, Matcher


@dataclass
class TrainConfig:
    """Optimisation settings of the protocol; a matcher may change the defaults.

    After `warmup_epochs` at the constant `warmup_lr`, `schedule: cosine` decays the learning rate
    per step to 0 at the end; `epoch_cosine` holds it for an epoch at a time, epoch e (from 0) at
    lr·½(1 + cos(π·(e − warmup_epochs)/epochs)), as CoOp and CoCoOp train (Dassl's cosine with
    T_max = epochs after a constant warm-up: the last epoch keeps a small rate). `momentum`
    applies to `sgd` only."""

    loss: Literal["bce", "ce", "hinge"] = "bce"
    epochs: int = 5
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 8
    margin: float = 0.1
    grad_clip: float | None = 1.0
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = 0.9
    schedule: Literal["constant", "cosine", "epoch_cosine"] = "constant"
    warmup_epochs: int = 0
    warmup_lr: float = 1e-5

    def __post_init__(self) -> None:
        from vlbench.options import check, finite

        check(self.epochs >= 1, "epochs", f"must be at least 1, got {self.epochs}")
        check(self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}")
        check(finite(self.lr) and self.lr > 0, "lr", f"must be a positive number, got {self.lr}")
        check(finite(self.weight_decay) and self.weight_decay >= 0, "weight_decay", f"must be a number >= 0, got {self.weight_decay}")
        check(finite(self.margin) and self.margin >= 0, "margin", f"must be a number >= 0, got {self.margin}")
        check(self.grad_clip is None or (finite(self.grad_clip) and self.grad_clip > 0), "grad_clip", f"must be a positive number or null, got {self.grad_clip}")
        check(finite(self.momentum) and 0 <= self.momentum < 1, "momentum", f"must be in [0, 1), got {self.momentum}")
        check(0 <= self.warmup_epochs <= self.epochs, "warmup_epochs", f"must be between 0 and epochs ({self.epochs}), got {self.warmup_epochs}")
        check(finite(self.warmup_lr) and self.warmup_lr > 0, "warmup_lr", f"must be a positive number, got {self.warmup_lr}")


def learning_rate(train: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate of optimiser step `step` (0-based)."""
    warmup_steps = train.warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return train.warmup_lr
    if train.schedule == "constant":
        return train.lr
    if train.schedule == "epoch_cosine":
        return 0.5 * train.lr * (1 + math.cos(math.pi * (step // steps_per_epoch - train.warmup_epochs) / train.epochs))
    decay_steps = max(1, train.epochs * steps_per_epoch - warmup_steps)
    return 0.5 * train.lr * (1 + math.cos(math.pi * (step - warmup_steps) / decay_steps))


def make_optimizer(parameters: list, train: TrainConfig):
    import torch

    if train.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay)
    return torch.optim.AdamW(parameters, lr=train.lr, weight_decay=train.weight_decay)


def fit_by_scores(matcher: Matcher, examples: Sequence[Example], train: TrainConfig, load_images: Callable) -> None:
    """Minimise the protocol loss of `matcher.score` over `matcher.trainable_parameters()`.

    Examples are shuffled each epoch by a generator seeded from the run's seed; a step averages
    the loss over `train.batch_size` examples, accumulating each example's gradient as soon as it
    is scored, so memory holds one example's graph, not the batch's. In a multi-process run each rank takes its share of
    every batch and the gradients are summed over ranks, so a step's gradient is the mean over the
    whole batch, as in one process (uneven shares included).

    Inside `checkpoints.checkpointing` (as runs train) an epoch's end is checkpointed once a minute
    at most, and a checkpoint found at the start is resumed from, with the same end result.
    """
    import torch

    from vlbench import distributed
    from vlbench.losses import example_loss

    ranks = distributed.current()

    parameters = matcher.trainable_parameters()
    optimizer = make_optimizer(parameters, train)
    checkpoint = checkpoints.current()
    resumed = checkpoint.restore(matcher, optimizer, examples, train) if checkpoint else None
    position = resumed or checkpoints.Position(0, 0, list(range(len(examples))), random.Random(f"vlbench-train:{matcher.runtime.seed}"))
    steps_per_epoch = -(-len(examples) // train.batch_size)
    description = f"training (resumed after epoch {position.epochs_done})" if resumed else "training"
    with progress_bar(description, total=train.epochs * steps_per_epoch) as advance:
        advance(position.step)
        while position.epochs_done < train.epochs:
            position.shuffle.shuffle(position.order)
            order = [examples[index] for index in position.order]
            for start in range(0, len(order), train.batch_size):
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(train, position.step, steps_per_epoch)
                batch = order[start : start + train.batch_size]
                optimizer.zero_grad()
                for example in ranks.shard(batch):
                    # One example's graph at a time: its share of the batch mean, accumulated.
                    loss = example_loss(matcher.score(load_images(example), example.texts), example.positives, train.loss, train.margin)
                    if not loss.requires_grad:
                        raise VlbenchError(
                            f"matcher '{matcher.name}': the scores of '{example.id}' carry no gradient to its trained parameters, so training cannot change them; "
                            "score() must compute them differentiably from self.trained (the default fit trains through score)"
                        )
                    (loss / len(batch)).backward()
                ranks.sum_gradients(parameters)
                if train.grad_clip:
                    torch.nn.utils.clip_grad_norm_(parameters, train.grad_clip)
                optimizer.step()
                position.step += 1
                advance(1)
            position.epochs_done += 1
            if checkpoint:
                checkpoint.save_if_due(matcher, optimizer, examples, train, position)
