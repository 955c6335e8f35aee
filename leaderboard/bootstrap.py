"""Paired bootstrap over examples: does a matcher's per-example outcome differ from a baseline's on
the same examples (same split and seed)?

A pair is one example both scored (see `outcomes.paired_outcomes`); a resample draws pairs with replacement. The
p-value is two-sided, from the resampled differences shifted to mean zero (the null):
`(#{|δ* − δ̂| ≥ |δ̂|} + 1) / (B + 1)` over the B resamples, counting the observed sample as one of
them (Davison & Hinkley 1997), so it is never 0: at most 1/(B + 1) is the resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedBootstrap:
    difference: float  # mean(matcher − baseline) over paired examples
    low: float  # 95% percentile interval of the difference
    high: float
    p_value: float
    n_pairs: int


def paired_bootstrap(matcher: Sequence[float], baseline: Sequence[float], resamples: int = 10_000, seed: int = 0) -> PairedBootstrap:
    """The bootstrap of `mean(matcher − baseline)`; inputs are aligned per-example outcomes."""
    differences = np.asarray(matcher, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    if differences.size == 0:
        raise ValueError("no paired examples")
    observed = float(differences.mean())
    rng = np.random.default_rng(seed)
    means = np.concatenate([
        differences[rng.integers(0, differences.size, size=(min(1000, resamples - start), differences.size))].mean(axis=1)
        for start in range(0, resamples, 1000)
    ])
    low, high = np.percentile(means, [2.5, 97.5])
    extreme = int(np.count_nonzero(np.abs(means - observed) >= abs(observed) - 1e-12))
    p_value = (extreme + 1) / (means.size + 1)
    return PairedBootstrap(observed, float(low), float(high), p_value, int(differences.size))
