"""`dsd-release`: DSD as the official code computes it (github.com/eric-ai-lab/Discffusion).

Per timestep t of the grid `T−1−k, k in range(10, T−10, T // S)` (`sampling_steps` S: the
release's default is 30; its README runs ComVG with 40, RefCOCOg with 10 and VQA with 200, which
the suites set per task), with one noise sample per grid point shared by every example and
candidate, and a seeded VAE latent *sample* per (image, t):
- attention term: on the released layers (in each of the down, mid and up stages, the last
  cross-attention block), the pre-softmax logits `QKᵀ·scale` LogSumExp'ed over all text tokens
  (padding included, λ = 1), averaged over heads, pixels and layers, and, as released, averaged
  with the same quantity of the unconditional ("") branch (`include_uncond_attention`);
- denoising gain: `‖ε − ε̂_uncond‖₂ − ‖ε − ε̂_cond‖₂` (`denoising_gain`).
The score is their sum, averaged over the grid. The unconditional branch runs once per image and
timestep, and outside training no (image, text, timestep) job runs twice in a process's run
(`stable_diffusion.memo`). Noising with DDPM's `add_noise` equals the release's Euler `x + σε` followed by
`scale_model_input` (both are `√ᾱ·x + √(1−ᾱ)·ε`).

Scored per example: the release averages the attention term over its whole batch, so with its
README's batch of 16 every example sees its batch-mates' attention at each candidate index (and
the positive is always index 0). That bug is not reproduced.

Training: LoRA (rank 4, `N(0, 1/rank)` down, zero up) on `to_q`, `to_k`, `to_v`, `to_out` of
every UNet attention, through peft; hinge loss on the hardest negative (margin 0.1), AdamW lr
1e-4, weight decay 1e-2, grad clip 1, batch 1. Each training step draws `train_timesteps` random
timesteps and fresh noise, shared by the example's candidates (the release draws them per pair).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vlbench.errors import VlbenchError
from vlbench.matchers.dsd.pooling import release_readout
from vlbench.matchers.stable_diffusion.capture import CapturingCrossAttention, CrossAttentionCapture, released_layers
from vlbench.matchers.stable_diffusion.inputs import LatentMode
from vlbench.matchers.stable_diffusion.matcher import Jobs, StableDiffusionMatcher, UNetOptions
from vlbench.matchers.stable_diffusion.memo import JobResults, distinct_jobs
from vlbench.options import check

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


@dataclass
class DSDReleaseOptions(UNetOptions):
    sampling_steps: int = 30  # S, the release's default; its README: ComVG 40, RefCOCOg 10, VQA 200
    denoising_gain: bool = True
    include_uncond_attention: bool = True
    latent: LatentMode = "sample"
    lora_rank: int = 4
    train_timesteps: int = 1  # random timesteps per training step

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.sampling_steps >= 1, "sampling_steps", f"must be at least 1, got {self.sampling_steps}")
        check(self.lora_rank >= 1, "lora_rank", f"must be at least 1, got {self.lora_rank}")
        check(self.train_timesteps >= 1, "train_timesteps", f"must be at least 1, got {self.train_timesteps}")


def timestep_grid(sampling_steps: int, train_steps: int = 1000) -> list[int]:
    """The release's grid, ascending: `T−1−k` for `k in range(10, T−10, T // S)`."""
    return sorted(train_steps - 1 - k for k in range(10, train_steps - 10, train_steps // sampling_steps))


class DSDReleaseMatcher(StableDiffusionMatcher):
    name = "dsd-release"
    summary = "DSD as released: LoRA, hinge loss, LSE over text tokens of logits + denoising gain, timestep grid."
    trainable = True
    train_defaults = {"loss": "hinge", "margin": 0.1, "lr": 1e-4, "weight_decay": 1e-2, "grad_clip": 1.0, "batch_size": 1}
    Options = DSDReleaseOptions

    def __init__(self, options, runtime):
        super().__init__(options, runtime)
        train_steps = self.sd.scheduler.config.num_train_timesteps
        if options.sampling_steps > train_steps:
            raise VlbenchError(f"matcher_options.sampling_steps: at most the scheduler's {train_steps} timesteps, got {options.sampling_steps}")
        self.grid = timestep_grid(options.sampling_steps, train_steps)
        self.layers = released_layers(self.sd.unet)
        self.capture = CrossAttentionCapture(self.sd.unet, {layer: CapturingCrossAttention(release_readout) for layer in self.layers})
        self.has_lora = False
        self.results = JobResults()  # scoring jobs already computed with the current trained weights

    @classmethod
    def unet_passes(cls, options, examples, training):
        unconditional = [""] if options.include_uncond_attention or options.denoising_gain else []
        if training:  # every example's jobs afresh, at its own random timesteps
            return sum(len(example.images) * (len(example.texts) + len(unconditional)) for example in examples) * options.train_timesteps
        return distinct_jobs(examples, unconditional) * len(timestep_grid(options.sampling_steps))  # a 1000-step scheduler, as every SD's

    def training_capture(self) -> CrossAttentionCapture:
        return self.capture

    def score(self, images, texts):
        return self.score_examples([(images, texts)])[0]

    def score_examples(self, batch):
        if self.training_noise is not None:  # training: each example draws its own timesteps and noise
            return [self._scores([example], self._timesteps(), JobResults())[0] for example in batch]
        return self._scores(batch, self.grid, JobResults() if torch.is_grad_enabled() else self.results.for_weights(self.state_dict()))

    def _scores(self, batch, grid: list[int], results: JobResults) -> list[torch.Tensor]:
        """Each example's scores from its jobs' (attention term, denoising error) rows; the
        unconditional branch is the condition ""."""
        needs_unconditional = self.options.include_uncond_attention or self.options.denoising_gain
        conditions = [list(texts) + ([""] if needs_unconditional else []) for _, texts in batch]
        scored = []
        for (_, texts), rows in zip(batch, self.memoised_rows(batch, conditions, grid, self._attention_and_error, results)):
            by_step = rows.transpose(1, 2)  # [images, steps, conditions, 2]
            score = by_step[:, :, : len(texts), 0].contiguous()
            unconditional = by_step[:, :, len(texts) :]
            if self.options.include_uncond_attention:
                score = 0.5 * (score + unconditional[..., 0])
            if self.options.denoising_gain:
                score = score + unconditional[..., 1] - by_step[:, :, : len(texts), 1]
            scored.append(score.mean(dim=1))
        return scored

    def _attention_and_error(self, jobs: Jobs) -> torch.Tensor:
        """`[jobs, 2]`: each job's attention term and ‖ε − ε̂‖₂."""
        with self.capture:
            attention, predicted = self._attention_and_output(jobs)
        return torch.stack([attention, (jobs.noise - predicted).flatten(1).norm(dim=1)], dim=1)

    def _attention_and_output(self, jobs: Jobs):
        per_layer, predicted = self.run_unet(jobs, self.capture)
        return torch.stack(per_layer).mean(dim=0), predicted

    def _timesteps(self) -> list[int]:
        if self.training_noise is None:
            return self.grid
        high = self.sd.scheduler.config.num_train_timesteps
        return sorted(torch.randint(0, high, (self.options.train_timesteps,), generator=self.training_noise).tolist())

    def _ensure_lora(self) -> None:
        from peft import LoraConfig

        if not self.has_lora:
            rank = self.options.lora_rank
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.runtime.seed)
                self.sd.unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=LORA_TARGETS))
            self.has_lora = True

    def trainable_parameters(self):
        self._ensure_lora()
        return [parameter for name, parameter in self.sd.unet.named_parameters() if "lora_" in name]

    def fit(self, examples, train, load_images):
        self._ensure_lora()
        super().fit(examples, train, load_images)

    def state_dict(self):
        return {name: tensor.detach().to("cpu", copy=True) for name, tensor in self.sd.unet.state_dict().items() if "lora_" in name}

    def load_state_dict(self, state):
        if not state:
            return
        self._ensure_lora()
        result = self.sd.unet.load_state_dict(state, strict=False)
        missing = [name for name in result.missing_keys if "lora_" in name]
        if result.unexpected_keys or missing:
            raise VlbenchError(f"matcher '{self.name}': stored LoRA state does not fit this UNet (first mismatch: {(result.unexpected_keys or missing)[0]})")

