"""Paired comparison over examples: does a matcher's per-example outcome differ from a baseline's on
the same examples (same split and seed)?

The statistic is the compared metric's difference, a weighted mean `T = Σ wᵢ dᵢ` of the per-example
differences: `wᵢ = 1/n` for a metric that is a mean over examples, or, where the task's headline
averages groups with equal weight (ComVG's `average` over `neg_value`), `wᵢ = 1/(G·n_g)`, so `T` is
the difference of the headline itself.

- The interval is the 95% percentile interval of a paired bootstrap that resamples examples
  within each group (a group keeps its size, and so the weights; a group of one example adds no
  spread, and small groups understate theirs by about √((n_g − 1)/n_g)).
- p is two-sided, from a paired sign-flip (permutation) test: under the null the two rows'
  outcomes of an example are exchangeable, so each `dᵢ` keeps or flips its sign at random;
  `p = (#{|T*| ≥ |T|} + 1) / (B + 1)` over B random flips, counting the observed sample as one of
  them, so it is never 0 and at best 1/(B + 1). For 0/1 outcomes this is McNemar's exact test up to
  Monte Carlo error (without groups; with them, a weighted sign-flip test); a bootstrap p (the resampled differences shifted to the null) is too small
  where few examples differ: 5 examples right in one row only, none in the other, gives 0.033
  against the exact 0.0625.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CHUNK = 1000  # resamples drawn at once


@dataclass(frozen=True)
class PairedComparison:
    difference: float  # the metric's difference (matcher − baseline) over the paired examples
    low: float  # 95% percentile interval of the difference
    high: float
    p_value: float
    n_pairs: int


def paired_comparison(matcher: Sequence[float], baseline: Sequence[float], groups: Sequence[str] | None = None, resamples: int = 10_000, seed: int = 0) -> PairedComparison:
    """The paired comparison of aligned per-example outcomes; `groups` (one label per example)
    makes the metric the mean over groups of each group's mean."""
    differences = np.asarray(matcher, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    if differences.size == 0:
        raise ValueError("no paired examples")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    labels = _group_labels(groups, differences.size)
    weights = _group_weights(labels)
    observed = float(weights @ differences)
    rng = np.random.default_rng(seed)
    chunks = [min(CHUNK, resamples - start) for start in range(0, resamples, CHUNK)]
    members = [np.flatnonzero(labels == group) for group in range(labels.max() + 1)]
    means = np.concatenate([sum(differences[index[rng.integers(0, index.size, size=(count, index.size))]].mean(axis=1) for index in members) / len(members) for count in chunks])
    low, high = np.percentile(means, [2.5, 97.5])
    weighted = weights * differences
    extreme = sum(int(np.count_nonzero(np.abs(np.where(rng.random((count, differences.size)) < 0.5, -weighted, weighted).sum(axis=1)) >= abs(observed) - 1e-12)) for count in chunks)
    return PairedComparison(observed, float(low), float(high), (extreme + 1) / (resamples + 1), int(differences.size))


def grouped_mean(values: Sequence[float], groups: Sequence[str] | None = None) -> float:
    """The mean over groups of each group's mean (no groups: the plain mean), as `paired_comparison`
    weighs its examples."""
    values = np.asarray(values, dtype=np.float64)
    return float(_group_weights(_group_labels(groups, values.size)) @ values)


def _group_labels(groups: Sequence[str] | None, size: int) -> np.ndarray:
    """Each example's group as 0…G−1 (all 0 without groups)."""
    return np.zeros(size, dtype=np.int64) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]


def _group_weights(labels: np.ndarray) -> np.ndarray:
    """`1/(G·n_g)` per example: weights whose sum of weighted values is the mean of group means."""
    counts = np.bincount(labels)
    return 1.0 / (len(counts) * counts[labels])
