"""Straightforward per-pair implementations of the `dsd` and `dsd-release` scores: the baseline
`benchmarks/dsd_speed.py` measures the batched matchers against, and the check that batching,
caching and early exit change no score.

Per (image, text) pair and timestep: VAE-encode the image, encode the text, run the whole UNet
(batch 1; `dsd-release`: batch 2, unconditional and conditional, as released) with explicit
attention on every layer (diffusers' `AttnProcessor`, as the released code runs), keep the full
attention maps of the scored layers, and pool them afterwards.
"""

from __future__ import annotations

import torch

from vlbench.matchers.cross_attention import AttentionStore, CapturingCrossAttention
from vlbench.matchers.diffusion_inputs import candidate_set_identity, seeded_generator


def _explicit_attention(matcher, store: AttentionStore) -> dict:
    """Set explicit-attention processors everywhere (capturing on the scored layers); returns the
    previous processors."""
    from diffusers.models.attention_processor import AttnProcessor

    unet = matcher.sd.unet
    previous = dict(unet.attn_processors)
    shift = getattr(matcher, "_shift", None)
    scored = {f"{layer}.processor" for layer in store.layers}
    unet.set_attn_processor({name: CapturingCrossAttention(name.removesuffix(".processor"), store, shift) if name in scored else AttnProcessor() for name in previous})
    return previous


def _encode_text(matcher, text):
    sd = matcher.sd
    tokens = sd.tokenizer([text], padding="max_length", max_length=sd.tokenizer.model_max_length, truncation=True, return_tensors="pt")
    states = sd.text_encoder(tokens.input_ids.to(matcher.runtime.device)).last_hidden_state
    return states, tokens.attention_mask.bool().to(matcher.runtime.device)


def per_pair_dsd_scores(matcher, images, texts) -> torch.Tensor:
    """`[images, texts]` scores of a `DSDMatcher` (latent `mean`), one pair and level at a time."""
    sd, options = matcher.sd, matcher.options
    store = AttentionStore(matcher.layers, lambda logits, probabilities: (logits, probabilities), stop_early=False)
    previous = _explicit_attention(matcher, store)
    identity = candidate_set_identity(images, texts)
    scores = torch.zeros(len(images), len(texts))
    try:
        for i, image in enumerate(images):
            for j, text in enumerate(texts):
                distribution = matcher.sd.vae.encode(matcher.inputs.pixels([image])).latent_dist
                states, mask = _encode_text(matcher, text)
                if options.tokens == "words":
                    mask = matcher._token_mask([text])
                latent = distribution.mean * sd.vae.config.scaling_factor
                per_level = []
                for level, timestep in zip(options.noise_levels, matcher.timesteps):
                    noise = torch.randn(latent.shape[1:], generator=seeded_generator(matcher.runtime.seed, identity, level)).to(latent)
                    t = torch.tensor([timestep], device=latent.device)
                    sd.unet(sd.scheduler.add_noise(latent, noise[None], t).to(sd.unet.dtype), t, encoder_hidden_states=states.to(sd.unet.dtype))
                    maps = store.take()
                    per_level.append(torch.stack([matcher._layer_score(matcher._reduce(*layer), mask) for layer in maps]).mean())
                scores[i, j] = torch.stack(per_level).mean()
    finally:
        sd.unet.set_attn_processor(previous)
    return matcher._calibrate(scores)


def per_pair_release_scores(matcher, images, texts) -> torch.Tensor:
    """`[images, texts]` scores of a `DSDReleaseMatcher`, one pair and timestep at a time."""
    sd, options = matcher.sd, matcher.options
    store = AttentionStore(matcher.store.layers, lambda logits, probabilities: logits, stop_early=False)
    previous = _explicit_attention(matcher, store)
    scores = torch.zeros(len(images), len(texts))
    try:
        for i, image in enumerate(images):
            for j, text in enumerate(texts):
                distribution = matcher.sd.vae.encode(matcher.inputs.pixels([image])).latent_dist
                (states, _), (empty, _) = _encode_text(matcher, text), _encode_text(matcher, "")
                per_step = []
                for timestep in matcher.grid:
                    sample = torch.randn(distribution.mean.shape[1:], generator=seeded_generator(matcher.runtime.seed, image.content_hash, timestep)).to(distribution.mean)
                    latent = (distribution.mean + distribution.std * sample) if options.latent == "sample" else distribution.mean
                    latent = latent * sd.vae.config.scaling_factor
                    noise = torch.randn(latent.shape[1:], generator=seeded_generator(matcher.runtime.seed, "dsd-release-noise", timestep)).to(latent)
                    t = torch.tensor([timestep, timestep], device=latent.device)
                    noisy = sd.scheduler.add_noise(latent, noise[None], t[:1]).expand(2, -1, -1, -1)
                    predicted = sd.unet(noisy.to(sd.unet.dtype), t, encoder_hidden_states=torch.cat([empty, states]).to(sd.unet.dtype)).sample.float()
                    layers = [matcher._reduce(logits, None) for logits in store.take()]  # [uncond, cond] per layer
                    attention = torch.stack([layer.mean() if options.include_uncond_attention else layer[1] for layer in layers]).mean()
                    gain = (noise - predicted[0]).norm() - (noise - predicted[1]).norm() if options.denoising_gain else 0.0
                    per_step.append(attention + gain)
                scores[i, j] = torch.stack(per_step).mean()
    finally:
        sd.unet.set_attn_processor(previous)
    return scores
