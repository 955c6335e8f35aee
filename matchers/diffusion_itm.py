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
from vlbench.matchers.stable_diffusion.matcher import Jobs, StableDiffusionMatcher, UNetOptions, product_indices
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

    @classmethod
    def unet_passes(cls, options, n_images, n_texts, training):
        steps = len(options.timesteps or upstream_grid(options.sampling_steps))  # a 1000-step scheduler, as every SD's
        return n_images * (n_texts + options.normalize) * steps

    def score(self, images, texts):
        n_images, n_steps = len(images), len(self.timesteps)
        latents = self.latents(images, self.options.latent, self.timesteps).flatten(0, 1)  # (image, step) rows
        conditions = self.inputs.text_states(list(texts) + ([""] if self.options.normalize else []))
        noise = torch.stack([self.noise(t, latents.shape[1:]) for t in self.timesteps]).to(latents)
        n_conditions = len(conditions)
        # Jobs in (image, condition, timestep) order, all in as few UNet calls as unet_batch allows.
        image_index, condition_index, step_index = product_indices(n_images, n_conditions, n_steps)
        timesteps = torch.tensor(self.timesteps, device=latents.device)
        masks = torch.ones(n_conditions, conditions.shape[1], dtype=torch.bool, device=latents.device)
        jobs = Jobs(latents[image_index * n_steps + step_index], noise[step_index], timesteps[step_index], conditions[condition_index], masks[condition_index])
        _, predicted = self.run_unet(jobs)
        difference = (predicted - jobs.noise).flatten(1)
        per_job = difference.norm(dim=1) if self.options.error == "l2" else difference.pow(2).mean(dim=1)
        errors = per_job.view(n_images, n_conditions, n_steps).mean(dim=-1).double()
        if self.options.normalize:
            errors = errors[:, :-1] - errors[:, -1:]
        return -errors
