"""The base of the Stable Diffusion matchers: the loaded checkpoint, its cached inputs, and UNet
calls over many (latent, noise, timestep, text) jobs in chunks, optionally reading cross-attention.

A job's result depends on its own inputs only (GroupNorm, attention and the prompt meta-nets are
per sample), so chunking, batch size and candidate order do not change scores.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import torch

from vlbench.errors import VlbenchError
from vlbench.matchers.stable_diffusion.capture import CrossAttentionCapture
from vlbench.matchers.stable_diffusion.inputs import DiffusionInputs, LatentMode, Resize, shared_noise
from vlbench.matchers.stable_diffusion.loading import DEFAULT_MODEL
from vlbench.matchers.stable_diffusion.memo import JobResults
from vlbench.options import check
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
    gradient_checkpointing: bool = False  # training recomputes UNet activations in backward: less memory, more time

    def __post_init__(self) -> None:
        check(self.unet_batch >= 1, "unet_batch", f"must be at least 1, got {self.unet_batch}")


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

    version = "3"  # 2: latents and text states encoded one item at a time; 3: in padded batches of 8
    uses_model = True
    default_model = DEFAULT_MODEL
    hashes_pixels = True  # latents, seeds and memoised jobs are keyed by pixels

    def __init__(self, options, runtime):
        super().__init__(options, runtime)
        from vlbench.matchers.stable_diffusion.loading import load_stable_diffusion

        if options.attention == "xformers" and (torch.device(runtime.device).type != "cuda" or importlib.util.find_spec("xformers") is None):
            raise VlbenchError("matcher_options.attention: xformers needs a CUDA device and the xformers package (pip install xformers); the default sdpa needs neither")
        self.sd = load_stable_diffusion(runtime.model, runtime.device)
        if options.dtype != "float32":
            self.sd.unet.to(DTYPES[options.dtype])
        if options.attention == "xformers":
            self.sd.unet.enable_xformers_memory_efficient_attention()
        if options.gradient_checkpointing:
            self.sd.unet.enable_gradient_checkpointing()  # diffusers checkpoints only while gradients are on
        self.unet = torch.compile(self.sd.unet) if options.compile else self.sd.unet
        self.inputs = DiffusionInputs(self.sd, runtime.device, options.feature_cache, options.resize)
        self.training_noise: torch.Generator | None = None  # set while training: fresh noise each step
        self.passes = {"unet_passes_scoring": 0, "unet_passes_training": 0}  # latents through the UNet, without and with gradients

    @classmethod
    def missing_model(cls, model):
        from vlbench.matchers.stable_diffusion.loading import missing_stable_diffusion

        return missing_stable_diffusion(model)

    def noise(self, timestep: int, shape) -> torch.Tensor:
        """The run's shared noise for `timestep` (see `inputs`), or while training a fresh draw."""
        if self.training_noise is not None:
            return torch.randn(tuple(shape), generator=self.training_noise)
        return shared_noise(self.runtime.seed, timestep, shape)

    def latents(self, images, mode: LatentMode, timesteps=(None,)) -> torch.Tensor:
        """`[images, timesteps, 4, h, w]` latents of `images`, one per timestep; a `sample` is
        seeded by (run seed, image content, timestep), so a pair's latent never depends on what
        else is scored. Each image goes through the VAE once."""
        seeds = [[(self.runtime.seed, image.content_hash, *(() if t is None else (t,))) for t in timesteps] for image in images]
        return self.inputs.latents(images, mode, seeds)

    def memoised_rows(self, batch, conditions: Sequence[Sequence[str]], grid: Sequence[int], job_rows: Callable[[Jobs], torch.Tensor], results: JobResults) -> list[torch.Tensor]:
        """Per example of `batch` (images, texts) with its `conditions` (the texts a job is
        conditioned on), the rows `[images, conditions, len(grid), ...]` that `job_rows(jobs)`
        gives its jobs, a job keyed by (image content, condition, grid position). The jobs of the
        whole batch that `results` does not hold yet are computed together."""
        images = {image.content_hash: image for example_images, _ in batch for image in example_images}

        def keys(example_images, example_conditions) -> list[tuple]:
            return [(image.content_hash, condition, step) for image in example_images for condition in example_conditions for step in range(len(grid))]

        def compute(missing: list[tuple]) -> torch.Tensor:
            return self.keyed_job_rows([images[key[0]] for key in missing], [key[1] for key in missing], [key[2] for key in missing], grid, job_rows)

        examples = [(example_images, example_conditions) for (example_images, _), example_conditions in zip(batch, conditions, strict=True)]
        results.ensure([key for example in examples for key in keys(*example)], compute)
        return [results.rows(keys(*example)).unflatten(0, (len(example[0]), len(example[1]), len(grid))) for example in examples]

    def keyed_job_rows(self, images, texts: Sequence[str], steps: Sequence[int], grid: Sequence[int], job_rows: Callable[[Jobs], torch.Tensor]) -> torch.Tensor:
        """`job_rows` of the jobs (images[i], texts[i], timestep grid[steps[i]]), `unet_batch` jobs
        at a time (each input is encoded once; only a UNet call's jobs are gathered at once).
        Latents from `job_latents`; noise drawn per grid position in grid order (in training, a
        fresh draw each)."""
        distinct_images = list({image.content_hash: image for image in images}.values())
        image_row = {image.content_hash: row for row, image in enumerate(distinct_images)}
        positions, distinct_texts = sorted(set(steps)), list(dict.fromkeys(texts))
        position_row, text_row = {position: row for row, position in enumerate(positions)}, {text: row for row, text in enumerate(distinct_texts)}
        timesteps = [grid[position] for position in positions]
        latents = self.job_latents(distinct_images, timesteps)  # [images, positions, 4, h, w]
        noise = torch.stack([self.noise(t, latents.shape[2:]) for t in timesteps]).to(latents)
        states, masks = self.inputs.text_states(distinct_texts), self.token_masks(distinct_texts)
        timestep_values = torch.tensor(timesteps, device=latents.device)
        image_index = torch.tensor([image_row[image.content_hash] for image in images])
        step_index = torch.tensor([position_row[step] for step in steps])
        text_index = torch.tensor([text_row[text] for text in texts])
        rows = []
        for start in range(0, len(images), self.options.unet_batch):
            part = slice(start, start + self.options.unet_batch)
            image, step, text = image_index[part], step_index[part], text_index[part]
            rows.append(job_rows(Jobs(latents[image, step], noise[step], timestep_values[step], states[text], masks[text])))
        return torch.cat(rows)

    def job_latents(self, images, timesteps: Sequence[int]) -> torch.Tensor:
        """`[images, len(timesteps), 4, h, w]`: the latents of jobs at each timestep, as
        `options.latent` says (a `sample` drawn per timestep)."""
        return self.latents(images, self.options.latent, timesteps)

    def token_masks(self, texts) -> torch.Tensor:
        """`[texts, max_length]` bool: the text tokens a job's readout averages over (all of them here)."""
        return torch.ones(len(texts), self.sd.tokenizer.model_max_length, dtype=torch.bool, device=self.runtime.device)

    def run_unet(self, jobs: Jobs, capture: CrossAttentionCapture | None = None) -> tuple[list[Any], torch.Tensor]:
        """Per layer of `capture`, the readouts of every job (concatenated over chunks), and the
        predicted noise `[jobs, 4, h, w]` (float32). The capture must be entered by the caller."""
        layer_values: list[list[Any]] = []
        outputs = []
        dtype = self.sd.unet.dtype
        for start in range(0, len(jobs), self.options.unet_batch):
            chunk = jobs.chunk(start, start + self.options.unet_batch)
            noisy = self.sd.scheduler.add_noise(chunk.latents, chunk.noise, chunk.timesteps)
            if capture is not None:
                capture.clear()  # a checkpointed backward re-runs the processors and leaves readouts behind
            self.before_unet_call(chunk)
            self.passes["unet_passes_training" if torch.is_grad_enabled() else "unet_passes_scoring"] += len(chunk)
            outputs.append(self.unet(noisy.to(dtype), chunk.timesteps, encoder_hidden_states=chunk.states.to(dtype)).sample.float())
            if capture is not None:
                layer_values.append(capture.take())
        return [_concatenated(values) for values in zip(*layer_values)], torch.cat(outputs)

    def before_unet_call(self, chunk: Jobs) -> None:
        """Called with each chunk's jobs just before the UNet runs them (nothing by default)."""

    def fit(self, examples, train, load_images):
        """The protocol's training loop, drawing fresh seeded noise (`training_noise`) each step;
        in a multi-process run each rank draws its own stream (rank 0's is the one-process stream).
        The training capture stays installed through every backward, where gradient checkpointing
        runs the layers again."""
        from vlbench import distributed

        self.training_noise = torch.Generator().manual_seed(self.runtime.seed + 1_000_003 * distributed.current().rank)
        try:
            with self.training_capture():
                super().fit(examples, train, load_images)
        finally:
            self.training_noise = None

    def training_generators(self):
        return [] if self.training_noise is None else [self.training_noise]

    def training_capture(self) -> AbstractContextManager:
        """The capture that scoring installs while training (none by default)."""
        return nullcontext()

    def work_done(self):
        return dict(self.passes)

    def model_fingerprint(self):
        return self.sd.fingerprint

    def library_versions(self):
        return ["diffusers", "transformers", "tokenizers", *(["xformers"] if self.options.attention == "xformers" else [])]  # tokenizers: transformers' CLIP tokenizer runs on it


def _concatenated(values: Sequence[Any]) -> Any:
    """Chunks' readouts joined along the job axis (tensors, or dicts of tensors)."""
    if isinstance(values[0], dict):
        return {key: torch.cat([value[key] for value in values]) for key in values[0]}
    return torch.cat(values)
