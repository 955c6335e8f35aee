"""Straightforward per-pair implementations of the `dsd` and `dsd-release` scores: the check that
batching, caching and the shared capture change no score, and the baseline
`benchmarks/dsd_speed.py` measures the batched matchers against.

Per (image, text) pair and timestep: VAE-encode the image, encode the text, run the whole UNet
(batch 1; `dsd-release`: batch 2, unconditional and conditional, as released) with explicit
attention on every layer (diffusers' `AttnProcessor`, as the released code runs), keep the full
attention maps of the scored layers, and pool them afterwards.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from vlbench.matchers.stable_diffusion.capture import CapturingCrossAttention
from vlbench.matchers.stable_diffusion.inputs import seeded_generator, shared_noise


def _keep_all(logits, probabilities):
    return logits, probabilities


@contextmanager
def _explicit_attention(unet, scored: dict[str, CapturingCrossAttention]):
    """Explicit-attention processors everywhere, the `scored` ones on their layers; restored after."""
    from diffusers.models.attention_processor import AttnProcessor

    previous = dict(unet.attn_processors)
    unet.set_attn_processor({name: scored.get(name.removesuffix(".processor"), AttnProcessor()) for name in previous})
    try:
        yield
    finally:
        unet.set_attn_processor(previous)


def _processors(matcher, layers) -> dict[str, CapturingCrossAttention]:
    """Capturing processors that keep the whole maps; `dsd`'s trained prompts when it has them."""
    prompts = matcher.prompts.processors if getattr(matcher, "prompts", None) is not None else None
    processors = {}
    for index, layer in enumerate(layers):
        processor = prompts[index] if prompts is not None else CapturingCrossAttention(_keep_all)
        processor.readout = _keep_all
        processors[layer] = processor
    return processors


def _encode_text(matcher, text):
    sd = matcher.sd
    tokens = sd.tokenizer([text], padding="max_length", max_length=sd.tokenizer.model_max_length, truncation=True, return_tensors="pt")
    states = sd.text_encoder(tokens.input_ids.to(matcher.runtime.device)).last_hidden_state
    return states, tokens.attention_mask.bool().to(matcher.runtime.device)


def per_pair_dsd_scores(matcher, images, texts) -> torch.Tensor:
    """`[images, texts]` scores of a `DSDMatcher` (latent `mean`), one pair and level at a time."""
    from vlbench.matchers.dsd.pooling import PooledAttention

    sd, options = matcher.sd, matcher.options
    processors = _processors(matcher, matcher.layers)
    readout = PooledAttention(options.pooling, options.lse_lambda, attribution=options.heads == "dynamic")
    scores = torch.zeros(len(images), len(texts))
    try:
        with _explicit_attention(sd.unet, processors):
            for i, image in enumerate(images):
                for j, text in enumerate(texts):
                    distribution = sd.vae.encode(matcher.inputs.pixels([image])).latent_dist
                    states, mask = _encode_text(matcher, text)
                    if options.tokens == "words":
                        mask = matcher.token_masks([text])
                    latent = distribution.mean * sd.vae.config.scaling_factor
                    per_level = []
                    for timestep in matcher.timesteps:
                        noise = shared_noise(matcher.runtime.seed, timestep, latent.shape[1:]).to(latent)
                        t = torch.tensor([timestep], device=latent.device)
                        sd.unet(sd.scheduler.add_noise(latent, noise[None], t).to(sd.unet.dtype), t, encoder_hidden_states=states.to(sd.unet.dtype))
                        maps = [processors[layer].take() for layer in matcher.layers]
                        per_level.append(torch.stack([matcher._layer_score(readout(*layer), mask) for layer in maps]).mean())
                    scores[i, j] = torch.stack(per_level).mean()
    finally:
        for processor in processors.values():
            processor.readout = matcher.readout
    return matcher._calibrate(scores)


def per_pair_release_scores(matcher, images, texts) -> torch.Tensor:
    """`[images, texts]` scores of a `DSDReleaseMatcher`, one pair and timestep at a time."""
    from vlbench.matchers.dsd.pooling import release_readout

    sd, options = matcher.sd, matcher.options
    processors = _processors(matcher, matcher.layers)
    scores = torch.zeros(len(images), len(texts))
    with _explicit_attention(sd.unet, processors):
        for i, image in enumerate(images):
            for j, text in enumerate(texts):
                distribution = sd.vae.encode(matcher.inputs.pixels([image])).latent_dist
                (states, _), (empty, _) = _encode_text(matcher, text), _encode_text(matcher, "")
                per_step = []
                for timestep in matcher.grid:
                    sample = torch.randn(distribution.mean.shape[1:], generator=seeded_generator(matcher.runtime.seed, image.content_hash, timestep)).to(distribution.mean)
                    latent = (distribution.mean + distribution.std * sample) if options.latent == "sample" else distribution.mean
                    latent = latent * sd.vae.config.scaling_factor
                    noise = shared_noise(matcher.runtime.seed, timestep, latent.shape[1:]).to(latent)
                    t = torch.tensor([timestep, timestep], device=latent.device)
                    noisy = sd.scheduler.add_noise(latent, noise[None], t[:1]).expand(2, -1, -1, -1)
                    predicted = sd.unet(noisy.to(sd.unet.dtype), t, encoder_hidden_states=torch.cat([empty, states]).to(sd.unet.dtype)).sample.float()
                    layers = [release_readout(*processors[layer].take()) for layer in matcher.layers]  # [uncond, cond] per layer
                    attention = torch.stack([layer.mean() if options.include_uncond_attention else layer[1] for layer in layers]).mean()
                    gain = (noise - predicted[0]).norm() - (noise - predicted[1]).norm() if options.denoising_gain else 0.0
                    per_step.append(attention + gain)
                scores[i, j] = torch.stack(per_step).mean()
    return scores


def per_pair_release_training_scores(matcher, images, texts, generator: torch.Generator) -> torch.Tensor:
    """`[images, texts]` training scores of a `DSDReleaseMatcher` (one training timestep) as the
    release's `dsd_train.py` computes them: per text, its states encoded with the tokenizer's
    attention mask; per image, a latent sample, noise and a timestep drawn in that order, the ""
    branch (unmasked) and the text's in one UNet call at that timestep."""
    from vlbench.matchers.dsd.pooling import release_readout

    sd, options = matcher.sd, matcher.options
    processors = _processors(matcher, matcher.layers)
    scores = torch.zeros(len(images), len(texts))
    empty, _ = _encode_text(matcher, "")
    with _explicit_attention(sd.unet, processors):
        for j, text in enumerate(texts):
            tokens = sd.tokenizer([text], padding="max_length", max_length=sd.tokenizer.model_max_length, truncation=True, return_tensors="pt")
            states = sd.text_encoder(tokens.input_ids, attention_mask=tokens.attention_mask).last_hidden_state
            for i, image in enumerate(images):
                distribution = sd.vae.encode(matcher.inputs.pixels([image])).latent_dist
                sample = torch.randn(distribution.mean.shape[1:], generator=generator)
                latent = (distribution.mean + (distribution.std * sample if options.latent == "sample" else 0)) * sd.vae.config.scaling_factor
                noise = torch.randn(latent.shape[1:], generator=generator)
                t = torch.randint(0, sd.scheduler.config.num_train_timesteps, (), generator=generator).repeat(2)
                noisy = sd.scheduler.add_noise(torch.cat([latent] * 2), noise[None], t)
                predicted = sd.unet(noisy, t, encoder_hidden_states=torch.cat([empty, states])).sample
                layers = [release_readout(*processors[layer].take()) for layer in matcher.layers]  # [uncond, cond] per layer
                attention = torch.stack([layer.mean() if options.include_uncond_attention else layer[1] for layer in layers]).mean()
                gain = (noise - predicted[0]).norm() - (noise - predicted[1]).norm() if options.denoising_gain else 0.0
                scores[i, j] = attention + gain
    return scores
