"""The plumbing the Stable Diffusion matchers share: loading, cached inputs, and UNet calls over
many (latent, timestep, text) jobs in chunks, optionally capturing cross-attention.

A job's result depends on its own inputs only (GroupNorm, attention and the prompt meta-nets are
per sample), so chunking, batch size and candidate order do not change scores.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from vlbench.errors import VlbenchError
from vlbench.matchers.cross_attention import AttentionStore, StopUNet, install_capture, select_layers
from vlbench.matchers.diffusion_inputs import DiffusionInputs, LatentMode, Resize
from vlbench.types import Matcher

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class UNetOptions:
    """Options every Stable Diffusion matcher has."""

    resize: Resize = "squash"
    unet_batch: int = 64  # jobs (image, text, timestep) per UNet call; does not change scores
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"  # the UNet's; half precision is for GPUs
    attention: Literal["sdpa", "xformers"] = "sdpa"  # the kernel of every layer not captured
    compile: bool = False  # torch.compile the UNet (GPU; the first calls are slow)
    feature_cache: bool = True  # keep VAE latents and text states on disk ($VLBENCH_CACHE/features)


@dataclass
class Jobs:
    """UNet inputs, one row per job: clean latents, noise, timesteps, text states, token masks."""

    latents: torch.Tensor
    noise: torch.Tensor
    timesteps: torch.Tensor
    states: torch.Tensor
    masks: torch.Tensor

    def __len__(self) -> int:
        return len(self.timesteps)

    def chunk(self, start: int, stop: int) -> Jobs:
        return Jobs(*(tensor[start:stop] for tensor in (self.latents, self.noise, self.timesteps, self.states, self.masks)))

    @staticmethod
    def concat(parts: Sequence[Jobs]) -> Jobs:
        return Jobs(*(torch.cat([getattr(part, name) for part in parts]) for name in ("latents", "noise", "timesteps", "states", "masks")))


def product_indices(*sizes: int) -> tuple[torch.Tensor, ...]:
    """Index tensors over every combination of `range(size)` for each size, the last varying fastest."""
    return tuple(grid.flatten() for grid in torch.meshgrid(*(torch.arange(size) for size in sizes), indexing="ij"))


class StableDiffusionMatcher(Matcher):
    """Base of `dsd`, `dsd-release` and `diffusion-itm`."""

    uses_model = True

    def __init__(self, options, runtime):
        super().__init__(options, runtime)
        from vlbench.matchers.stable_diffusion import load_stable_diffusion

        if options.unet_batch < 1:
            raise VlbenchError(f"matcher_options.unet_batch must be at least 1, got {options.unet_batch}")
        if options.attention == "xformers" and (torch.device(runtime.device).type != "cuda" or importlib.util.find_spec("xformers") is None):
            raise VlbenchError("matcher_options.attention: xformers needs a CUDA device and the xformers package (pip install xformers); the default sdpa needs neither")
        self.sd = load_stable_diffusion(runtime.model, runtime.device)
        if options.dtype != "float32":
            self.sd.unet.to(DTYPES[options.dtype])
        if options.attention == "xformers":
            self.sd.unet.enable_xformers_memory_efficient_attention()
        self.unet = torch.compile(self.sd.unet) if options.compile else self.sd.unet
        self.inputs = DiffusionInputs(self.sd, runtime.device, options.feature_cache, options.resize)
        self.store: AttentionStore | None = None
        self.training_noise: torch.Generator | None = None  # set while training: fresh noise each step

    def capture(self, layers: str | Sequence[str], reduce: Callable, stop_early: bool, key_value_shift: Callable | None = None) -> list[str]:
        """Capture `reduce(logits, probabilities)` on the chosen `attn2` layers of the UNet."""
        try:
            chosen = select_layers(self.sd.unet, layers)
        except ValueError as error:
            raise VlbenchError(f"matcher_options.{error}") from None
        self.store = AttentionStore(chosen, reduce, stop_early)
        install_capture(self.sd.unet, chosen, self.store, key_value_shift)
        return chosen

    def latents(self, images, mode: LatentMode, *seed_parts) -> torch.Tensor:
        """Latents of `images`; a `sample` is seeded by (run seed, image content, `seed_parts`)."""
        seeds = [(self.runtime.seed, image.content_hash, *seed_parts) for image in images]
        return self.inputs.latents(images, mode, seeds)

    def run_unet(self, jobs: Jobs, need_output: bool) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Per captured layer, the stored values of every job (concatenated over chunks), and the
        predicted noise `[jobs, 4, h, w]` (float32) when `need_output`."""
        unet = self.unet
        layer_values: list[list[torch.Tensor]] = []
        outputs = []
        for start in range(0, len(jobs), self.options.unet_batch):
            chunk = jobs.chunk(start, start + self.options.unet_batch)
            noisy = self.sd.scheduler.add_noise(chunk.latents, chunk.noise, chunk.timesteps)
            try:
                dtype = self.sd.unet.dtype
                predicted = unet(noisy.to(dtype), chunk.timesteps, encoder_hidden_states=chunk.states.to(dtype)).sample
                outputs.append(predicted.float())
            except StopUNet:
                if need_output:
                    raise
            if self.store is not None:
                layer_values.append(self.store.take())
        per_layer = [torch.cat(values) for values in zip(*layer_values)]
        return per_layer, torch.cat(outputs) if need_output else None

    def fit(self, examples, train, load_images):
        """The protocol's training loop, drawing fresh seeded noise (`training_noise`) each step;
        in a multi-process run each rank draws its own stream (rank 0's is the one-process stream)."""
        from vlbench import distributed

        self.training_noise = torch.Generator().manual_seed(self.runtime.seed + 1_000_003 * distributed.current().rank)
        try:
            super().fit(examples, train, load_images)
        finally:
            self.training_noise = None

    def fingerprint(self):
        return {**super().fingerprint(), **self.sd.fingerprint}

    def library_versions(self):
        return ["diffusers", "transformers"]
