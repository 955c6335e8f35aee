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
1e-4, weight decay 1e-2, grad clip 1, batch 1. As the release's `dsd_train.py` scores a training
example: each (text, image) pair at a random timestep of its own (`train_timesteps` of them), with
fresh noise and a fresh latent sample that its unconditional job shares, and its text encoded with
the tokenizer's attention mask (the unconditional "" and all scoring without it, as released).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vlbench.errors import VlbenchError
from vlbench.matchers.dsd.pooling import release_readout
from vlbench.matchers.stable_diffusion.capture import CapturingCrossAttention, CrossAttentionCapture, released_layers
from vlbench.matchers.stable_diffusion.inputs import LatentMode
from vlbench.matchers.stable_diffusion.matcher import Jobs, StableDiffusionMatcher, UNetOptions, product_indices
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
    train_timesteps: int = 1  # random timesteps per pair and training step (the release: 1)

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
    version = "4"  # 4: trains each pair at its own draws, its text masked, as the release (3: draws shared by an example's pairs)
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
        if training:  # every pair afresh, at its own random timesteps, with its own unconditional job
            return sum(example.n_pairs for example in examples) * (1 + len(unconditional)) * options.train_timesteps
        return distinct_jobs(examples, unconditional) * len(timestep_grid(options.sampling_steps))  # a 1000-step scheduler, as every SD's

    def training_capture(self) -> CrossAttentionCapture:
        return self.capture

    def score(self, images, texts):
        return self.score_examples([(images, texts)])[0]

    def score_examples(self, batch):
        if self.training_noise is not None:
            return [self._training_scores(images, texts) for images, texts in batch]
        return self._scores(batch, self.grid, JobResults() if torch.is_grad_enabled() else self.results.for_weights(self.state_dict()))

    def _training_scores(self, images, texts) -> torch.Tensor:
        """`[images, texts]`: each pair's score at its own `train_timesteps` random timesteps, each
        with a fresh latent sample and fresh noise, its text's states masked, its "" job sharing its
        draws. Drawn from `training_noise` as released: pair by pair, the texts' loop outside the
        images', a latent sample, then noise, then a timestep (`latent: mean` draws the sample too
        and trains on the mean, as it scores). With `train_timesteps` above 1 (not in the release)
        each pair makes that many draws and averages its scores."""
        steps, high, generator = self.options.train_timesteps, self.sd.scheduler.config.num_train_timesteps, self.training_noise
        text_index, image_index, _ = product_indices(len(texts), len(images), steps)
        mean, std = self.inputs.latent_distribution(images)
        draws = [(torch.randn(mean.shape[1:], generator=generator), torch.randn(mean.shape[1:], generator=generator), torch.randint(0, high, (), generator=generator)) for _ in range(len(text_index))]
        samples, noise, timesteps = (torch.stack(drawn).to(mean.device) for drawn in zip(*draws))
        latents = (mean[image_index] + (std[image_index] * samples if self.options.latent == "sample" else 0)) * self.sd.vae.config.scaling_factor
        states = self.inputs.text_states(texts, masked=True)[text_index]
        masks = self.token_masks(texts)[text_index]
        parts = [Jobs(latents, noise, timesteps, states, masks)]
        if self.options.include_uncond_attention or self.options.denoising_gain:
            parts.append(Jobs(latents, noise, timesteps, self.inputs.text_states([""]).expand_as(states), self.token_masks([""]).expand_as(masks)))
        rows = self._attention_and_error(Jobs.concat(parts))
        score = self._combined(rows[: len(text_index)], rows[len(text_index) :])
        return score.view(len(texts), len(images), steps).mean(dim=-1).T

    def _scores(self, batch, grid: list[int], results: JobResults) -> list[torch.Tensor]:
        """Each example's scores from its jobs' (attention term, denoising error) rows; the
        unconditional branch is the condition ""."""
        needs_unconditional = self.options.include_uncond_attention or self.options.denoising_gain
        conditions = [list(texts) + ([""] if needs_unconditional else []) for _, texts in batch]
        scored = []
        for (_, texts), rows in zip(batch, self.memoised_rows(batch, conditions, grid, self._attention_and_error, results)):
            by_step = rows.transpose(1, 2)  # [images, steps, conditions, 2]
            scored.append(self._combined(by_step[:, :, : len(texts)], by_step[:, :, len(texts) :]).mean(dim=1))
        return scored

    def _combined(self, conditional: torch.Tensor, unconditional: torch.Tensor) -> torch.Tensor:
        """The score from (attention term, denoising error) rows `[..., 2]` of the texts' jobs and
        of their "" jobs (broadcast against them): the attention term, averaged with the ""
        branch's (`include_uncond_attention`), plus the denoising gain (`denoising_gain`)."""
        score = conditional[..., 0].contiguous()
        if self.options.include_uncond_attention:
            score = 0.5 * (score + unconditional[..., 0])
        if self.options.denoising_gain:
            score = score + unconditional[..., 1] - conditional[..., 1]
        return score

    def _attention_and_error(self, jobs: Jobs) -> torch.Tensor:
        """`[jobs, 2]`: each job's attention term and ‖ε − ε̂‖₂."""
        with self.capture:
            attention, predicted = self._attention_and_output(jobs)
        return torch.stack([attention, (jobs.noise - predicted).flatten(1).norm(dim=1)], dim=1)

    def _attention_and_output(self, jobs: Jobs):
        per_layer, predicted = self.run_unet(jobs, self.capture)
        return torch.stack(per_layer).mean(dim=0), predicted

    def _ensure_lora(self) -> None:
        from peft import LoraConfig

        if not self.has_lora:
            rank = self.options.lora_rank
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.runtime.seed)
                self.sd.unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=LORA_TARGETS))
            self.has_lora = True

    def library_versions(self):
        return [*super().library_versions(), "peft"]  # builds the LoRA it trains

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

