"""Paired comparison over examples: does a matcher's per-example outcome differ from a baseline's on
the same examples (same split and seed)?

The statistic is the compared metric's difference, a weighted mean `T = Σ wᵢ dᵢ` of the per-example
differences: `wᵢ = 1/n` for a metric that is a mean over examples, or, where the task's headline
averages groups with equal weight (ComVG's `average` over `neg_value`), `wᵢ = 1/(G·n_g)`, so `T` is
the difference of the headline itself.

Both the interval and p resample *units*: the examples of a group that share a cluster (given
`clusters`: examples whose outcomes are not independent, as questions about one picture are not),
else each example alone. Dependent examples resampled one by one make the interval too narrow and
p too small.

- The interval is the 95% percentile interval of a paired bootstrap that resamples units
  within each group (a group keeps its number of units; a unit adds its examples, so a group's mean
  is the drawn units' sum over their size; a group of one unit adds no spread, and groups of few
  units understate theirs by about √((k_g − 1)/k_g)).
- p is two-sided, from a paired sign-flip (permutation) test: under the null the two rows'
  outcomes of a unit are exchangeable, so each unit's weighted sum of `dᵢ` keeps or flips its sign
  at random; `p = (#{|T*| ≥ |T|} + 1) / (B + 1)` over B random flips, counting the observed
  sample as one of them, so it is never 0 and at best 1/(B + 1). For 0/1 outcomes of independent
  examples this is McNemar's exact test up to Monte Carlo error (without groups; with them, a
  weighted sign-flip test); a bootstrap p (the resampled differences shifted to the null) is too
  small where few examples differ: 5 examples right in one row only, none in the other, gives 0.033
  against the exact 0.0625.

With every unit one example, the resamples and flips are those of an example-level test, drawn
from the same random numbers.
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
    n_units: int  # what the bootstrap and the sign flips resample: clusters within groups, or examples


def paired_comparison(
    matcher: Sequence[float], baseline: Sequence[float], groups: Sequence[str] | None = None, *, clusters: Sequence[str] | None = None, resamples: int = 10_000, seed: int = 0
) -> PairedComparison:
    """The paired comparison of aligned per-example outcomes; `groups` (one label per example)
    makes the metric the mean over groups of each group's mean; `clusters` (one label per example)
    resamples and flips the examples of a group sharing a label together."""
    differences = np.asarray(matcher, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    if differences.size == 0:
        raise ValueError("no paired examples")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    labels = _group_labels(groups, differences.size)
    units = _unit_labels(labels, clusters)
    weights = _group_weights(labels)
    observed = float(weights @ differences)
    rng = np.random.default_rng(seed)
    chunks = [min(CHUNK, resamples - start) for start in range(0, resamples, CHUNK)]
    unit_sums, unit_sizes = np.bincount(units, weights=differences), np.bincount(units)
    members = [np.unique(units[labels == group]) for group in range(labels.max() + 1)]
    means = np.concatenate([sum(_drawn_mean(unit_sums, unit_sizes, index[rng.integers(0, index.size, size=(count, index.size))]) for index in members) / len(members) for count in chunks])
    low, high = np.percentile(means, [2.5, 97.5])
    weighted = np.bincount(units, weights=weights * differences)
    extreme = sum(int(np.count_nonzero(np.abs(np.where(rng.random((count, weighted.size)) < 0.5, -weighted, weighted).sum(axis=1)) >= abs(observed) - 1e-12)) for count in chunks)
    return PairedComparison(observed, float(low), float(high), (extreme + 1) / (resamples + 1), int(differences.size), int(weighted.size))


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


def _unit_labels(labels: np.ndarray, clusters: Sequence[str] | None) -> np.ndarray:
    """Each example's unit as 0…U−1, numbered in order of first example: the examples of one
    group sharing a cluster (without clusters, each example alone)."""
    if clusters is None:
        return np.arange(labels.size)
    if len(clusters) != labels.size:
        raise ValueError(f"{len(clusters)} cluster labels for {labels.size} examples")
    first: dict[tuple[int, str], int] = {}
    return np.array([first.setdefault(key, len(first)) for key in zip(labels.tolist(), clusters)], dtype=np.int64)


def _drawn_mean(unit_sums: np.ndarray, unit_sizes: np.ndarray, drawn: np.ndarray) -> np.ndarray:
    """Per resample (a row of `drawn` units), the mean over the examples of the units drawn."""
    return unit_sums[drawn].sum(axis=1) / unit_sizes[drawn].sum(axis=1)
