"""`diffusion-itm`: the denoising-error score of a Stable Diffusion UNet (Krojer et al., 2023).

score(image, text) = -mean over timesteps of ||eps - eps_hat(x_t, t, text)||^2 / numel, with
the image's VAE latent (mean × scaling factor) noised at each timestep. One noise tensor per
timestep is drawn from a generator seeded by (run seed, timestep, the example's candidate set),
and shared by every candidate (common random numbers); it does not depend on batching or order.
With `normalize`, the unconditional error (empty text) is subtracted, so images of different
difficulty compare fairly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from vlbench.matchers.sd_matcher import Jobs, StableDiffusionMatcher, UNetOptions, product_indices


@dataclass
class DiffusionITMOptions(UNetOptions):
    timesteps: list[int] = field(default_factory=lambda: [100, 300, 500, 700, 900])
    normalize: bool = False


class DiffusionITMMatcher(StableDiffusionMatcher):
    name = "diffusion-itm"
    summary = "Denoising-error score of a Stable Diffusion UNet (optionally minus the unconditional error)."
    Options = DiffusionITMOptions

    def score(self, images, texts):
        import torch

        latents = self.latents(images, "mean")
        conditions = self.inputs.text_states(list(texts) + ([""] if self.options.normalize else []))
        generator = torch.Generator().manual_seed(self._noise_seed(images, texts))
        noise = torch.stack([torch.randn(latents.shape[1:], generator=generator) for _ in self.options.timesteps]).to(latents)
        n_images, n_conditions, n_steps = len(images), len(conditions), len(self.options.timesteps)
        # Jobs in (image, condition, timestep) order, all in as few UNet calls as unet_batch allows.
        image_index, condition_index, step_index = product_indices(n_images, n_conditions, n_steps)
        timesteps = torch.tensor(self.options.timesteps, device=latents.device)
        masks = torch.ones(n_conditions, conditions.shape[1], dtype=torch.bool, device=latents.device)
        jobs = Jobs(latents[image_index], noise[step_index], timesteps[step_index], conditions[condition_index], masks[condition_index])
        _, predicted = self.run_unet(jobs, need_output=True)
        errors = (predicted - jobs.noise).pow(2).mean(dim=(1, 2, 3)).view(n_images, n_conditions, n_steps).mean(dim=-1).double()
        if self.options.normalize:
            errors = errors[:, :-1] - errors[:, -1:]
        return -errors

    def _noise_seed(self, images, texts) -> int:
        candidates = "\0".join(sorted(image.key for image in images)) + "\1" + "\0".join(sorted(texts))
        return int.from_bytes(hashlib.blake2b(f"{self.runtime.seed}\1{candidates}".encode(), digest_size=8).digest(), "big") >> 1
