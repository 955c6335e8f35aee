"""`dsd`: Discriminative Stable Diffusion as the paper describes it (He et al., 2023).

For an (image, text) pair and each noise level ℓ: the image's VAE latent is noised at timestep
`round(ℓ·(T−1))` with one noise tensor per (example, level), drawn from a generator seeded by
(run seed, the example's candidate set, ℓ) and shared by all its candidates. On each captured
`attn2` layer the probabilities `A = softmax(QKᵀ/√d)` `[heads, image tokens, text tokens]` are
pooled over image tokens (`lse`: `(1/λ)·log Σᵢ exp(λ·A[i, :])`), averaged over the text's tokens,
then over heads (mean, or dynamic weights), layers and noise levels. The UNet stops after the
last captured layer.

Decisions where the paper is ambiguous (alternatives in brackets):
- Eq. 5 adds the prompt to `W^k`; here `P_k`, `P_v` are added to the keys and values, one row per
  text position, as the design specifies [a low-rank delta on `W^k`, which is what `dsd-release` does].
- The meta-net shift π is added to both `P_k` and `P_v` rows through separate output halves
  [one shared shift for keys and values, which puts them in one space].
- Dynamic head weighting (Eq. 7): head h's weight is its attribution `Σ A_h ⊙ ∂f/∂A_h` (f the
  pooled score, derivative in closed form), averaged over the text tokens and normalised over
  heads [the gradient of the training loss, which needs labels and a backward pass at inference].
- `tokens: real` averages over BOS, the words and EOS [`words`: the words only]; padding is
  always excluded.
- Scores are `exp(log_scale)·s + bias` (calibration; identity until trained), so `bce` sees
  logits; training starts with the scale and bias that give the training scores unit spread
  around the positive/negative midpoint. Training draws fresh noise each step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from vlbench.errors import VlbenchError
from vlbench.matchers.attention_pooling import Pooling, attention_grid, mean_over_tokens, pool_image_tokens, pooling_attribution, scaled_to_bytes
from vlbench.matchers.diffusion_inputs import LatentMode, candidate_set_identity, seeded_generator
from vlbench.matchers.sd_matcher import Jobs, StableDiffusionMatcher, UNetOptions, product_indices


@dataclass
class DSDOptions(UNetOptions):
    noise_levels: list[float] = field(default_factory=lambda: [0.2, 0.4, 0.6, 0.8])
    layers: str | list[str] = "all"  # all | last-K | release | [attn2 module names]
    heads: Literal["mean", "dynamic"] = "mean"
    pooling: Pooling = "lse"
    lse_lambda: float = 10.0
    tokens: Literal["real", "words"] = "real"
    latent: LatentMode = "mean"


ATTENTION_GRID = 16  # saved maps are resized to this many cells a side


class DSDMatcher(StableDiffusionMatcher):
    name = "dsd"
    summary = "Discriminative Stable Diffusion (paper): LSE-pooled cross-attention, attention prompt learning."
    trainable = True
    records_attention = True
    train_defaults = {"lr": 1e-2}  # the protocol's AdamW, bce, 5 epochs, batch 8; lr from a sweep on mini-world 7
    Options = DSDOptions

    def __init__(self, options, runtime):
        if not options.noise_levels or not all(0 < level < 1 for level in options.noise_levels):
            raise VlbenchError(f"matcher_options.noise_levels must be a non-empty list of values in (0, 1), got {options.noise_levels}")
        if options.lse_lambda <= 0:
            raise VlbenchError(f"matcher_options.lse_lambda must be positive, got {options.lse_lambda}")
        super().__init__(options, runtime)
        self.layers = self.capture(options.layers, self._reduce, stop_early=True, key_value_shift=self._shift)
        self.trained = torch.nn.ModuleDict()  # holds the prompts once trained or loaded
        steps = self.sd.scheduler.config.num_train_timesteps - 1
        self.timesteps = [round(level * steps) for level in options.noise_levels]
        self.grids: list[torch.Tensor] | None = None  # per captured layer call, while keeping maps
        self.kept: list[dict] = []

    @property
    def prompts(self):
        return self.trained["prompts"] if "prompts" in self.trained else None

    def _ensure_prompts(self):
        from vlbench.matchers.dsd_prompts import AttentionPrompts

        if self.prompts is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.runtime.seed)
                self.trained["prompts"] = AttentionPrompts(self.sd.unet, self.layers, self.sd.tokenizer.model_max_length)
        return self.prompts

    def _shift(self, layer, hidden_states, key, value):
        prompts = self.prompts
        return (key, value) if prompts is None else prompts.shift(layer, hidden_states, key, value)

    def _reduce(self, logits, probabilities):
        if self.grids is not None:
            self.grids.append(attention_grid(probabilities, ATTENTION_GRID))
        pooled = pool_image_tokens(probabilities, self.options.pooling, self.options.lse_lambda)
        if self.options.heads == "mean":
            return pooled
        return torch.stack([pooled, pooling_attribution(probabilities, self.options.pooling, self.options.lse_lambda)], dim=-1)

    def score(self, images, texts):
        return self.score_examples([(images, texts)])[0]

    def score_examples(self, batch):
        parts = [self._jobs(images, texts) for images, texts in batch]
        keeping = self.runtime.save_attention and self.training_noise is None
        self.grids = [] if keeping else None
        try:
            raw = self.pair_scores(Jobs.concat(parts))
            if keeping:
                self.kept = self._attention_records(batch, parts)
        finally:
            self.grids = None
        matrices, start = [], 0
        for (images, texts), part in zip(batch, parts):
            per_level = raw[start : start + len(part)].view(len(images), len(texts), len(self.timesteps))
            matrices.append(self._calibrate(per_level.mean(dim=-1)))
            start += len(part)
        return matrices

    def take_attention(self):
        kept, self.kept = self.kept, []
        return kept

    def _attention_records(self, batch, parts) -> list[dict]:
        """Per example, per (image, text) pair: each real token's map, averaged over the captured
        layers, heads and noise levels (the attention the score pooled)."""
        per_chunk = len(self.layers)
        grids = torch.cat([torch.stack(self.grids[at : at + per_chunk]).mean(dim=0) for at in range(0, len(self.grids), per_chunk)])
        records, start = [], 0
        for (images, texts), part in zip(batch, parts):
            maps = grids[start : start + len(part)].view(len(images), len(texts), len(self.timesteps), *grids.shape[1:]).mean(dim=2)
            masks, tokens = self._token_mask(texts).cpu(), self.inputs.token_strings(texts)
            pairs = [
                {"image": i, "text": t, "tokens": [token for token, real in zip(tokens[t], masks[t]) if real], "maps": scaled_to_bytes(maps[i, t][masks[t]])}
                for i in range(len(images))
                for t in range(len(texts))
            ]
            records.append({"size": ATTENTION_GRID, "pairs": pairs})
            start += len(part)
        return records

    def _jobs(self, images, texts) -> Jobs:
        """Jobs in (image, text, level) order."""
        latents = self.latents(images, self.options.latent)
        states, masks = self.inputs.text_states(texts), self._token_mask(texts)
        identity = candidate_set_identity(images, texts)
        shape = latents.shape[1:]
        noise = torch.stack([
            torch.randn(shape, generator=self.training_noise if self.training_noise is not None else seeded_generator(self.runtime.seed, identity, level))
            for level in self.options.noise_levels
        ]).to(latents)
        image_index, text_index, level_index = product_indices(len(images), len(texts), len(self.timesteps))
        timesteps = torch.tensor(self.timesteps, device=latents.device)
        return Jobs(latents[image_index], noise[level_index], timesteps[level_index], states[text_index], masks[text_index])

    def _token_mask(self, texts) -> torch.Tensor:
        mask = self.inputs.token_mask(texts)
        if self.options.tokens == "words":
            mask = mask.clone()
            mask[:, 0] = False
            mask[torch.arange(len(mask)), mask.sum(dim=1)] = False  # EOS: after the last word
            if not mask.any(dim=1).all():
                raise VlbenchError("matcher_options.tokens: words needs texts with at least one word; an empty text was given")
        return mask

    def pair_scores(self, jobs: Jobs) -> torch.Tensor:
        """`[jobs]`: the uncalibrated score of each job (mean over layers of the head-combined,
        token-averaged pooled attention)."""
        per_layer, _ = self.run_unet(jobs, need_output=False)
        return torch.stack([self._layer_score(values, jobs.masks) for values in per_layer]).mean(dim=0)

    def _layer_score(self, values, masks) -> torch.Tensor:
        if self.options.heads == "mean":
            return mean_over_tokens(values, masks).mean(dim=-1)
        per_head = mean_over_tokens(values[..., 0], masks)
        weights = mean_over_tokens(values[..., 1], masks)
        return (weights * per_head).sum(dim=-1) / weights.sum(dim=-1)

    def _calibrate(self, scores):
        return scores if self.prompts is None else self.prompts.calibrate(scores)

    def trainable_parameters(self):
        return list(self._ensure_prompts().parameters())

    def fit(self, examples, train, load_images):
        from vlbench.losses import midpoint_bias

        prompts = self._ensure_prompts()
        with torch.no_grad():
            raw = [self.score(load_images(example), example.texts) for example in examples]
            spread = torch.cat([scores.flatten() for scores in raw]).std().nan_to_num(1.0).clamp(min=1e-8)  # nan: a single pair
            prompts.log_scale.fill_(-spread.log().item())
            prompts.bias.fill_(midpoint_bias([prompts.log_scale.exp() * scores for scores in raw], [example.positives for example in examples]))
        super().fit(examples, train, load_images)

    def state_dict(self):
        return {} if self.prompts is None else {name: tensor.detach().cpu() for name, tensor in self.prompts.state_dict().items()}

    def load_state_dict(self, state):
        if state:
            self._ensure_prompts().load_state_dict(state)
