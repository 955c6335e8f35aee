"""Paired comparison over examples: does a matcher's per-example outcome differ from a baseline's on
the same examples (same split and seed)?

The statistic is the compared metric's difference, a weighted mean `T = Σ wᵢ dᵢ` of the per-example
differences: `wᵢ = 1/n` for a metric that is a mean over examples, or, where the task's headline
averages groups with equal weight (ComVG's `average` over `neg_value`), `wᵢ = 1/(G·n_g)`, so `T` is
the difference of the headline itself.

Both the interval and p resample *units*: the examples sharing a cluster (given `clusters`:
examples whose outcomes are not independent, as questions about one picture are not), in whatever
groups they fall, else each example alone. Resampled one by one, examples whose outcomes move
alike give an interval too narrow and p too small.

- The interval is the 95% percentile interval of a paired bootstrap that resamples units; each
  group's mean is the drawn units' sum of that group's differences over their number of that
  group's examples, and `T*` the mean of the groups' means. A resample that draws no example of
  some group (likely only for a group of a few units) has no `T*` and is left out. A group of one
  unit adds no spread, and few units understate theirs by about √((k − 1)/k).
- p is two-sided, from a paired sign-flip (permutation) test: under the null the two rows'
  outcomes of a unit are exchangeable, so each unit's weighted sum of `dᵢ` keeps or flips its sign
  at random; `p = (#{|T*| ≥ |T|} + 1) / (B + 1)` over B random flips, counting the observed
  sample as one of them, so it is never 0 and at best 1/(B + 1). For 0/1 outcomes of independent
  examples this is McNemar's exact test up to Monte Carlo error (without groups; with them, a
  weighted sign-flip test); a bootstrap p (the resampled differences shifted to the null) is too
  small where few examples differ: 5 examples right in one row only, none in the other, gives 0.033
  against the exact 0.0625.

Without groups and with every unit one example, the resamples and flips are those of the
example-level test vlbench made before it clustered examples, from the same random numbers.
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
    n_units: int  # what the bootstrap and the sign flips resample: clusters of examples, or examples


def paired_comparison(
    matcher: Sequence[float], baseline: Sequence[float], groups: Sequence[str] | None = None, *, clusters: Sequence[str] | None = None, resamples: int = 10_000, seed: int = 0
) -> PairedComparison:
    """The paired comparison of aligned per-example outcomes; `groups` (one label per example)
    makes the metric the mean over groups of each group's mean; `clusters` (one label per example)
    resamples and flips the examples sharing a label together."""
    differences = np.asarray(matcher, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    if differences.size == 0:
        raise ValueError("no paired examples")
    if not np.isfinite(differences).all():
        raise ValueError("paired outcomes must be finite numbers")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    labels = _group_labels(groups, differences.size)
    units = _unit_labels(clusters, differences.size)
    weights = _group_weights(labels)
    observed = float(weights @ differences)
    rng = np.random.default_rng(seed)
    chunks = [min(CHUNK, resamples - start) for start in range(0, resamples, CHUNK)]
    n_units = int(units.max()) + 1
    in_group = [labels == group for group in range(labels.max() + 1)]
    sums = [np.bincount(units[member], weights=differences[member], minlength=n_units) for member in in_group]  # per group: each unit's sum
    sizes = [np.bincount(units[member], minlength=n_units) for member in in_group]
    means = np.concatenate([_resampled(sums, sizes, rng.integers(0, n_units, size=(count, n_units))) for count in chunks])
    means = means[~np.isnan(means)]  # resamples that drew every group
    if means.size == 0:
        raise ValueError(f"none of the {resamples} resamples drew an example of every group; draw more")
    low, high = np.percentile(means, [2.5, 97.5])
    weighted = np.bincount(units, weights=weights * differences)
    extreme = sum(int(np.count_nonzero(np.abs(np.where(rng.random((count, n_units)) < 0.5, -weighted, weighted).sum(axis=1)) >= abs(observed) - 1e-12)) for count in chunks)
    return PairedComparison(observed, float(low), float(high), (extreme + 1) / (resamples + 1), int(differences.size), n_units)


def grouped_mean(values: Sequence[float], groups: Sequence[str] | None = None) -> float:
    """The mean over groups of each group's mean (no groups: the plain mean), as `paired_comparison`
    weighs its examples."""
    values = np.asarray(values, dtype=np.float64)
    return float(_group_weights(_group_labels(groups, values.size)) @ values)


def _group_labels(groups: Sequence[str] | None, size: int) -> np.ndarray:
    """Each example's group as 0…G−1 (all 0 without groups)."""
    if groups is not None and len(groups) != size:
        raise ValueError(f"{len(groups)} group labels for {size} examples")
    return np.zeros(size, dtype=np.int64) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]


def _group_weights(labels: np.ndarray) -> np.ndarray:
    """`1/(G·n_g)` per example: weights whose sum of weighted values is the mean of group means."""
    counts = np.bincount(labels)
    return 1.0 / (len(counts) * counts[labels])


def _unit_labels(clusters: Sequence[str] | None, size: int) -> np.ndarray:
    """Each example's unit as 0…U−1, numbered in order of first example: the examples sharing a
    cluster (without clusters, each example alone)."""
    if clusters is None:
        return np.arange(size)
    if len(clusters) != size:
        raise ValueError(f"{len(clusters)} cluster labels for {size} examples")
    first: dict[str, int] = {}
    return np.array([first.setdefault(cluster, len(first)) for cluster in clusters], dtype=np.int64)


def _resampled(sums: list[np.ndarray], sizes: list[np.ndarray], drawn: np.ndarray) -> np.ndarray:
    """Per resample (a row of `drawn` units), the mean over groups of each group's mean over the
    examples drawn; NaN where a group drew none."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return sum(group_sums[drawn].sum(axis=1) / group_sizes[drawn].sum(axis=1) for group_sums, group_sizes in zip(sums, sizes)) / len(sums)
