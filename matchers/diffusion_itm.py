"""`diffusion-itm`: the denoising-error score of a Stable Diffusion UNet (Krojer et al., 2023), with
upstream's defaults (github.com/McGill-NLP/diffusion-itm, `pipeline_stable_diffusion_img2img.py`).

score(image, text) = −mean over timesteps t of ‖ε_t − ε̂(x_t, t, text)‖₂, where x_t is the image's
VAE latent (a sample, seeded per image and timestep, × the scaling factor) noised at t with the
run's noise for t, shared by every image and candidate (upstream: one noise sample per timestep
for everything). Timesteps: upstream's `range(10, T − 10, T // S)` with `sampling_steps` S = 10,
i.e. t = 10, 110, …, 910 for T = 1000, unless `timesteps` lists them. With `normalize` (upstream's
`--img_retrieval`), the unconditional error (empty text) is subtracted, so images of different
difficulty compare fairly.

Options kept from earlier vlbench versions, not upstream's: `error: mse` (the mean squared error
per element; its average over timesteps ranks pairs differently from the L2 norm's) and
`latent: mean` (the latent distribution's mean instead of a sample).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from vlbench.matchers.stable_diffusion.inputs import LatentMode
from vlbench.matchers.stable_diffusion.matcher import Jobs, StableDiffusionMatcher, UNetOptions
from vlbench.matchers.stable_diffusion.memo import JobResults, distinct_jobs
from vlbench.options import check


@dataclass
class DiffusionITMOptions(UNetOptions):
    sampling_steps: int = 10  # S: upstream's grid range(10, T − 10, T // S)
    timesteps: list[int] | None = None  # explicit timesteps instead of the grid
    error: Literal["l2", "mse"] = "l2"
    latent: LatentMode = "sample"
    normalize: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.sampling_steps >= 1, "sampling_steps", f"must be at least 1, got {self.sampling_steps}")
        check(self.timesteps is None or (bool(self.timesteps) and all(t >= 0 for t in self.timesteps)), "timesteps", f"must be a non-empty list of timesteps >= 0, got {self.timesteps}")


def upstream_grid(sampling_steps: int, train_steps: int = 1000) -> list[int]:
    """diffusion-itm's timesteps: `range(10, T − 10, T // S)`."""
    return list(range(10, train_steps - 10, max(1, train_steps // sampling_steps)))


class DiffusionITMMatcher(StableDiffusionMatcher):
    name = "diffusion-itm"
    summary = "Denoising-error score of a Stable Diffusion UNet (optionally minus the unconditional error)."
    Options = DiffusionITMOptions

    def __init__(self, options, runtime):
        super().__init__(options, runtime)
        self.timesteps = options.timesteps or upstream_grid(options.sampling_steps, self.sd.scheduler.config.num_train_timesteps)
        self.results = JobResults()  # scoring jobs already computed in this run (the weights never change)

    @classmethod
    def unet_passes(cls, options, examples, training):
        steps = len(options.timesteps or upstream_grid(options.sampling_steps))  # a 1000-step scheduler, as every SD's
        return distinct_jobs(examples, [""] if options.normalize else []) * steps

    def score(self, images, texts):
        return self.score_examples([(images, texts)])[0]

    def score_examples(self, batch):
        """−errors per (image, text), from per-job errors; outside gradients no (image, condition,
        timestep) job runs twice in a process's run (`stable_diffusion.memo`)."""
        results = JobResults() if torch.is_grad_enabled() else self.results
        conditions = [list(texts) + ([""] if self.options.normalize else []) for _, texts in batch]
        scored = []
        for rows in self.memoised_rows(batch, conditions, self.timesteps, self._errors, results):
            errors = rows.mean(dim=-1).double()  # over timesteps: [images, conditions]
            if self.options.normalize:
                errors = errors[:, :-1] - errors[:, -1:]
            scored.append(-errors)
        return scored

    def _errors(self, jobs: Jobs) -> torch.Tensor:
        _, predicted = self.run_unet(jobs)
        difference = (predicted - jobs.noise).flatten(1)
        return difference.norm(dim=1) if self.options.error == "l2" else difference.pow(2).mean(dim=1)
