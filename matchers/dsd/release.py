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
timestep. Noising with DDPM's `add_noise` equals the release's Euler `x + σε` followed by
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
from vlbench.matchers.stable_diffusion.matcher import Jobs, StableDiffusionMatcher, UNetOptions, product_indices
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

    @classmethod
    def unet_passes(cls, options, n_images, n_texts, training):
        steps = options.train_timesteps if training else len(timestep_grid(options.sampling_steps))  # a 1000-step scheduler, as every SD's
        return n_images * steps * (n_texts + (options.include_uncond_attention or options.denoising_gain))

    def training_capture(self) -> CrossAttentionCapture:
        return self.capture

    def score(self, images, texts):
        return self.score_examples([(images, texts)])[0]

    def score_examples(self, batch):
        return [self._score_example(images, texts) for images, texts in batch]

    def _score_example(self, images, texts) -> torch.Tensor:
        grid = self._timesteps()
        n_images, n_texts, n_steps = len(images), len(texts), len(grid)
        latents = self.latents(images, self.options.latent, grid)  # [I, G, 4, h, w]
        noise = torch.stack([self.noise(t, latents.shape[2:]) for t in grid]).to(latents)
        timesteps = torch.tensor(grid, device=latents.device)
        states = self.inputs.text_states(list(texts) + [""])
        masks = torch.ones(len(states), states.shape[1], dtype=torch.bool, device=states.device)
        _, step_index = product_indices(n_images, n_steps)
        flat = latents.flatten(0, 1)  # rows in (image, step) order
        unconditional = Jobs(flat, noise[step_index], timesteps[step_index], states[-1:].expand(len(flat), -1, -1), masks[-1:].expand(len(flat), -1))
        image_index, step_of_job, text_index = product_indices(n_images, n_steps, n_texts)
        conditional = Jobs(flat[image_index * n_steps + step_of_job], noise[step_of_job], timesteps[step_of_job], states[text_index], masks[text_index])
        needs_unconditional = self.options.include_uncond_attention or self.options.denoising_gain
        with self.capture:
            attention_u, predicted_u = self._attention_and_output(unconditional) if needs_unconditional else (None, None)
            attention_c, predicted_c = self._attention_and_output(conditional)
        score = attention_c.view(n_images, n_steps, n_texts)
        if self.options.include_uncond_attention:
            score = 0.5 * (score + attention_u.view(n_images, n_steps, 1))
        if self.options.denoising_gain:
            error_c = (conditional.noise - predicted_c).flatten(1).norm(dim=1).view(n_images, n_steps, n_texts)
            error_u = (unconditional.noise - predicted_u).flatten(1).norm(dim=1).view(n_images, n_steps, 1)
            score = score + error_u - error_c
        return score.mean(dim=1)

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

