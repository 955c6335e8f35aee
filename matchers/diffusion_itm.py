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

from vlbench.types import Matcher


@dataclass
class DiffusionITMOptions:
    timesteps: list[int] = field(default_factory=lambda: [100, 300, 500, 700, 900])
    normalize: bool = False


class DiffusionITMMatcher(Matcher):
    name = "diffusion-itm"
    summary = "Denoising-error score of a Stable Diffusion UNet (optionally minus the unconditional error)."
    uses_model = True
    Options = DiffusionITMOptions

    def __init__(self, options, runtime):
        super().__init__(options, runtime)
        from vlbench.matchers.stable_diffusion import load_stable_diffusion

        self.sd = load_stable_diffusion(runtime.model, runtime.device)

    def score(self, images, texts):
        import torch

        latents = self._latents(images)
        conditions = self._embed(list(texts) + ([""] if self.options.normalize else []))
        generator = torch.Generator().manual_seed(self._noise_seed(images, texts))
        errors = torch.zeros(len(images), conditions.shape[0], dtype=torch.float64)
        for timestep in self.options.timesteps:
            noise = torch.randn(latents.shape[1:], generator=generator).to(latents)
            t = torch.tensor([timestep], device=latents.device)
            noisy = self.sd.scheduler.add_noise(latents, noise.expand_as(latents), t)
            # Every (image, text) pair in one UNet call.
            pairs_x = noisy.repeat_interleave(conditions.shape[0], dim=0)
            pairs_c = conditions.repeat(len(images), 1, 1)
            predicted = self.sd.unet(pairs_x, t.expand(len(pairs_x)), encoder_hidden_states=pairs_c).sample
            error = (predicted.float() - noise.float()).pow(2).mean(dim=(1, 2, 3)).view(len(images), -1)
            errors += error.double().cpu()
        errors /= len(self.options.timesteps)
        if self.options.normalize:
            errors = errors[:, :-1] - errors[:, -1:]
        return -errors

    def _latents(self, images):
        import numpy as np
        import torch

        size = self.sd.unet.config.sample_size * (2 ** (len(self.sd.vae.config.block_out_channels) - 1))
        pixels = torch.stack([torch.from_numpy(np.array(image.pixels.resize((size, size)), dtype=np.float32)) for image in images])
        pixels = (pixels.permute(0, 3, 1, 2) / 127.5 - 1).to(self.runtime.device)
        return self.sd.vae.encode(pixels).latent_dist.mean * self.sd.vae.config.scaling_factor

    def _embed(self, texts):
        tokens = self.sd.tokenizer(texts, padding="max_length", max_length=self.sd.tokenizer.model_max_length, truncation=True, return_tensors="pt")
        return self.sd.text_encoder(tokens.input_ids.to(self.runtime.device)).last_hidden_state

    def _noise_seed(self, images, texts) -> int:
        candidates = "\0".join(sorted(image.key for image in images)) + "\1" + "\0".join(sorted(texts))
        return int.from_bytes(hashlib.blake2b(f"{self.runtime.seed}\1{candidates}".encode(), digest_size=8).digest(), "big") >> 1

    def fingerprint(self):
        return {**super().fingerprint(), **self.sd.fingerprint}

    def library_versions(self):
        return ["diffusers", "transformers"]
