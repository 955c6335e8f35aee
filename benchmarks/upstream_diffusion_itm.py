"""diffusion-itm's scoring loop, ported to a diffusers folder: the baseline of
`benchmarks/diffusion_itm_speed.py`.

It mirrors McGill-NLP/diffusion-itm at 7d5a9c0 (`diffusion_itm.py`, `score_batch`) with its diffusers
fork's `StableDiffusionImg2ImgPipeline.__call__` and `prepare_latents` (McGill-NLP/diffusers at
8ad50fd), as upstream runs them:
- examples come in batches of `batch_size` (upstream's `--batchsize`, default 4); for each candidate
  text and each image slot, one pipeline call scores that pair for every example of the batch;
- a call encodes the batch's prompts (and the empty prompt, with `unconditional`, upstream's
  `--img_retrieval`), then for each timestep of `range(10, 990, 1000 // sampling_steps)`: encodes
  the batch's images with the VAE again and takes a latent sample × the scaling factor, noises it
  with noise-bank entry k for the k-th timestep (Euler: x + σε, then ÷ √(σ² + 1)), runs the UNet
  once on the batch (twice the batch with `unconditional`), and keeps ‖ε − ε̂‖₂ per example
  (minus the unconditional one, with `unconditional`);
- the score is −(the mean over timesteps).

Where it differs: float32 on the device given (upstream: float16 on CUDA); images are squashed to
the UNet's pixel size (upstream: 512, Stable Diffusion's); the noise bank is an argument (upstream:
`torch.randn(1000, 4, 64, 64)` pickled to `~/diffusers/noise_samples.pkl` on first use); Euler's
input scaling is written out, because current diffusers' `scale_model_input` keeps the first
timestep's σ when `step` is never called, as in this loop; the fork's `image_processor.preprocess`
maps an image tensor from [0, 1] to [-1, 1] when its smallest value is not negative, so upstream
maps a batch whose pixels are all at least 128 a second time, which the port does not copy.
"""

from __future__ import annotations

import numpy as np
import torch


class UpstreamDiffusionITM:
    """The port: `score(examples)` gives upstream's scores `[images, texts]` per example."""

    def __init__(self, root: str, device: str = "cpu", sampling_steps: int = 10, batch_size: int = 4, unconditional: bool = False, latent: str = "sample", seed: int = 0) -> None:
        from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        self.tokenizer = CLIPTokenizer.from_pretrained(root, subfolder="tokenizer")
        self.text_encoder = CLIPTextModel.from_pretrained(root, subfolder="text_encoder").to(device).eval()
        self.vae = AutoencoderKL.from_pretrained(root, subfolder="vae").to(device).eval()
        self.unet = UNet2DConditionModel.from_pretrained(root, subfolder="unet").to(device).eval()
        self.scheduler = EulerDiscreteScheduler.from_pretrained(root, subfolder="scheduler")
        self.device, self.batch_size, self.unconditional, self.latent = device, batch_size, unconditional, latent
        self.timesteps = list(range(10, 990, 1000 // sampling_steps))
        self.pixel_size = self.unet.config.sample_size * 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.generator = torch.Generator(device).manual_seed(seed)  # latent samples (upstream: unseeded)
        latent_shape = (self.unet.config.in_channels, self.unet.config.sample_size, self.unet.config.sample_size)
        self.noise_bank = torch.randn((len(self.timesteps), *latent_shape), generator=torch.Generator().manual_seed(seed))

    @torch.no_grad()
    def score(self, examples: list[tuple[list, list[str]]]) -> list[torch.Tensor]:
        """Per example (PIL images, texts), its scores `[images, texts]`; every example has as many
        images and texts as the first (upstream's DataLoader collates them)."""
        if any((len(images), len(texts)) != (len(examples[0][0]), len(examples[0][1])) for images, texts in examples):
            raise ValueError("every example needs as many images and texts as the first (upstream's DataLoader collates them)")
        scores = []
        for start in range(0, len(examples), self.batch_size):
            batch = examples[start : start + self.batch_size]
            images = [self.preprocess([example[0][slot] for example in batch]) for slot in range(len(batch[0][0]))]
            texts = [[example[1][slot] for example in batch] for slot in range(len(batch[0][1]))]
            pairs = [[-self.pipeline_call(prompts, image).mean(dim=1) for image in images] for prompts in texts]  # upstream's order
            scores += torch.stack([torch.stack(column, dim=1) for column in pairs], dim=2).double().unbind(0)
        return scores

    def preprocess(self, pictures) -> torch.Tensor:
        """Upstream's `resize` and `diffusers_preprocess`: to [-1, 1], channels first."""
        array = np.stack([np.asarray(picture.convert("RGB").resize((self.pixel_size, self.pixel_size)), dtype=np.float32) / 255.0 for picture in pictures])
        return torch.from_numpy(array).permute(0, 3, 1, 2).mul(2).sub(1).to(self.device)

    def pipeline_call(self, prompts: list[str], image: torch.Tensor) -> torch.Tensor:
        """The fork's `__call__`: distances `[batch, timesteps]`."""
        states = self.encode_prompt(prompts)
        if self.unconditional:
            states = torch.cat([self.encode_prompt([""] * len(prompts)), states])
        distances = []
        for step, t in enumerate(self.timesteps):
            latents, noise = self.prepare_latents(image, t, step)
            model_input = torch.cat([latents] * 2) if self.unconditional else latents
            predicted = self.unet(model_input, t, encoder_hidden_states=states).sample.flatten(1)
            noise = noise.flatten(1)
            if self.unconditional:
                unconditional, conditional = predicted.chunk(2)
                distances.append(torch.norm(noise - conditional, p=2, dim=1) - torch.norm(noise - unconditional, p=2, dim=1))
            else:
                distances.append(torch.norm(noise - predicted, p=2, dim=1))
        return torch.stack(distances, dim=1)

    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
        return self.text_encoder(ids.to(self.device))[0]

    def prepare_latents(self, image: torch.Tensor, t: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The fork's `prepare_latents` (the VAE runs at every timestep) and the Euler input scaling."""
        distribution = self.vae.encode(image).latent_dist
        latents = (distribution.sample(self.generator) if self.latent == "sample" else distribution.mean) * self.vae.config.scaling_factor
        noise = self.noise_bank[step].unsqueeze(0).repeat(len(image), 1, 1, 1).to(self.device)
        timesteps = torch.tensor([t] * len(image), device=self.device)
        sigma = self.scheduler.sigmas[self.scheduler.index_for_timestep(torch.tensor(t))]
        return self.scheduler.add_noise(latents, noise, timesteps) / (sigma**2 + 1) ** 0.5, noise
