"""The compute a run takes, counted before it runs: UNet passes over the examples it will draw.

A UNet pass is one noised latent through the UNet (a batch of b latents is b passes). The count
comes from the matcher (`Matcher.unet_passes`, `training_rounds`) and the run's drawn examples,
so it is exact for a run from scratch, with or without `save_attention`; encoders (VAE, text
encoder, CLIP) are not counted: they run once per image and text, against the UNet's once per
pair and timestep.
"""

from __future__ import annotations

from dataclasses import dataclass

from vlbench.runner import Prepared, draw

BACKWARD_COST = 2  # a backward pass costs about two forward passes


@dataclass(frozen=True)
class Work:
    """UNet passes of one or more runs: `scoring` forward only (evaluation, and scoring the
    training examples outside the gradient steps), `training` each followed by a backward pass."""

    scoring: int = 0
    training: int = 0

    def __add__(self, other: Work) -> Work:
        return Work(self.scoring + other.scoring, self.training + other.training)

    def hours(self, passes_per_second: float) -> float:
        """Hours at `passes_per_second` forward passes, a training pass counting as a forward and
        a backward (`1 + BACKWARD_COST` forwards)."""
        return (self.scoring + (1 + BACKWARD_COST) * self.training) / passes_per_second / 3600


def run_work(prepared: Prepared, seed: int) -> Work:
    """The UNet passes of seed `seed`'s run of `prepared`, from scratch (reads the task's
    annotations, loads no model)."""
    drawn = draw(prepared, seed)
    matcher, options = prepared.matcher_class, prepared.matcher_options

    def passes(examples, training: bool) -> int:
        return matcher.unet_passes(options, examples, training)

    evaluation = matcher.unet_passes_keeping_attention(options, drawn.evaluation) if prepared.config.save_attention else passes(drawn.evaluation, False)
    work = Work(scoring=evaluation)
    if prepared.train is not None:
        work += Work(scoring=matcher.scoring_rounds_in_fit * passes(drawn.training, False), training=matcher.training_rounds(prepared.train) * passes(drawn.training, True))
    return work
