"""Pooling cross-attention into scores. Tensors are `[..., image tokens n, text tokens m]`."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

Pooling = Literal["lse", "max", "mean"]


def pool_image_tokens(attention: torch.Tensor, pooling: Pooling, lam: float) -> torch.Tensor:
    """`[..., m]`: per text token, the image tokens pooled. `lse` is the paper's
    `(1/λ)·log Σᵢ exp(λ·A[i, :])`; `max` its λ → ∞ limit; `mean` the plain average."""
    if pooling == "lse":
        return torch.logsumexp(lam * attention, dim=-2) / lam
    if pooling == "max":
        return attention.amax(dim=-2)
    return attention.mean(dim=-2)


def pooling_attribution(attention: torch.Tensor, pooling: Pooling, lam: float) -> torch.Tensor:
    """`[..., m]`: `Σᵢ A[i, :] · ∂pool/∂A[i, :]`, the attribution `A ⊙ ∂f/∂A` of paper Eq. 7
    summed over image tokens, in closed form (no backward pass)."""
    if pooling == "lse":
        return (attention * torch.softmax(lam * attention, dim=-2)).sum(dim=-2)
    if pooling == "max":
        return attention.amax(dim=-2)
    return attention.mean(dim=-2)


def mean_over_tokens(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`[batch, ...]` from `[batch, ..., m]`: the mean over the text tokens where `mask` `[batch, m]` is set."""
    mask = mask.to(values.dtype).view(mask.shape[0], *([1] * (values.ndim - 2)), mask.shape[1])
    return (values * mask).sum(dim=-1) / mask.sum(dim=-1)


def text_logsumexp(logits: torch.Tensor) -> torch.Tensor:
    """`[..., n]`: LogSumExp of pre-softmax logits over every text token (padding included, λ = 1),
    the released DSD code's per-pixel score (the log-partition of each pixel's softmax)."""
    return torch.logsumexp(logits, dim=-1)


def attention_grid(probabilities: torch.Tensor, size: int) -> torch.Tensor:
    """`[jobs, text tokens, size, size]`: a layer's attention `[jobs, heads, image tokens, text
    tokens]` averaged over heads, as maps over the (square) latent grid resized to `size`."""
    mean = probabilities.float().mean(dim=1)
    side = math.isqrt(mean.shape[1])
    maps = mean.transpose(1, 2).reshape(mean.shape[0], mean.shape[2], side, side)
    return torch.nn.functional.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)


def scaled_to_bytes(maps: torch.Tensor) -> np.ndarray:
    """`maps` `[n, h, w]` each scaled to 0–255 (min to max) as uint8."""
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = (maps.amax(dim=(1, 2), keepdim=True) - low).clamp(min=1e-12)
    return ((maps - low) / span * 255).round().to(torch.uint8).cpu().numpy()


class PooledAttention:
    """`dsd`'s readout of a captured layer: `{"pooled": [jobs, heads, m]}` (image tokens pooled),
    with `attribution` also `{"attribution": …}` (for dynamic head weights), and while `grid_size`
    is set also `{"grid": [jobs, m, size, size]}` (the head-averaged maps that are saved)."""

    def __init__(self, pooling: Pooling, lam: float, attribution: bool) -> None:
        self.pooling = pooling
        self.lam = lam
        self.attribution = attribution
        self.grid_size: int | None = None

    def __call__(self, logits: torch.Tensor, probabilities: torch.Tensor) -> dict[str, torch.Tensor]:
        kept = {"pooled": pool_image_tokens(probabilities, self.pooling, self.lam)}
        if self.attribution:
            kept["attribution"] = pooling_attribution(probabilities, self.pooling, self.lam)
        if self.grid_size is not None:
            kept["grid"] = attention_grid(probabilities, self.grid_size)
        return kept


def release_readout(logits: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
    """`dsd-release`'s readout: `[jobs]`, the text-token LogSumExp of the logits averaged over
    heads and pixels."""
    return text_logsumexp(logits).mean(dim=(1, 2))
