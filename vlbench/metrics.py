"""Metric functions on one example's score matrix `scores[image][text]`, and their aggregation.

Ties count as wrong everywhere (strict `>`), as Winoground defines. The released DSD code put
the positive first and took an argmax, so it counted ties as right.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from vlbench.errors import VlbenchError

Scores = Sequence[Sequence[float]]


def image_choice_correct(scores: Scores, image: int, text: int) -> float:
    """1.0 if `image` scores strictly higher with `text` than every other image does."""
    target = scores[image][text]
    others = (scores[i][text] for i in range(len(scores)) if i != image)
    return float(all(target > other for other in others))


def text_rank(scores: Scores, image: int, text: int) -> int:
    """The pessimistic rank (1 = best) of `text` among the texts scored with `image`: every
    other text scoring at least as high ranks above it, so a tie costs the target."""
    row = scores[image]
    return 1 + sum(1 for j, value in enumerate(row) if j != text and value >= row[text])


def text_top_k(scores: Scores, image: int, text: int, ks: Sequence[int]) -> dict[str, float]:
    """``{"top1": …, "top5": …}``: whether `text` ranks within the top k for each k."""
    rank = text_rank(scores, image, text)
    return {f"top{k}": float(rank <= k) for k in ks}


def winoground_outcomes(scores: Scores) -> dict[str, float]:
    """Text, image and group score of a 2×2 matrix whose matching pairs are (0,0) and (1,1).

    text: each image prefers its own caption; image: each caption prefers its own image.
    """
    (c0_i0, c1_i0), (c0_i1, c1_i1) = scores
    text = c0_i0 > c1_i0 and c1_i1 > c0_i1
    image = c0_i0 > c0_i1 and c1_i1 > c1_i0
    return {"text": float(text), "image": float(image), "group": float(text and image)}


def aggregate(
    outcomes: Sequence[dict[str, float]], tags: Sequence[dict[str, str]]
) -> tuple[dict[str, float], dict[str, dict[str, dict[str, float]]]]:
    """Mean of each outcome over examples, overall and per tag value.

    Returns ``(metrics, breakdown)`` with ``breakdown[tag][value] = {"n": …, metric: …}``.
    """
    metrics = _means(outcomes)
    groups: dict[str, dict[str, list[dict[str, float]]]] = {}
    for outcome, example_tags in zip(outcomes, tags):
        for tag, value in example_tags.items():
            groups.setdefault(tag, {}).setdefault(value, []).append(outcome)
    breakdown = {
        tag: {value: {"n": len(members), **_means(members)} for value, members in sorted(values.items())}
        for tag, values in sorted(groups.items())
    }
    return metrics, breakdown


def _means(outcomes: Sequence[dict[str, float]]) -> dict[str, Any]:
    if not outcomes:
        return {}
    names = list(outcomes[0])
    # math.fsum is exact, so the mean does not depend on the order examples were scored in.
    return {name: math.fsum(outcome[name] for outcome in outcomes) / len(outcomes) for name in names}


def compute_metrics(task, scored) -> tuple[dict[str, float], dict[str, Any]]:
    """A run's metrics and per-tag breakdown from its stored scores (`ScoredExample`s) on `task`;
    a task whose `outcomes` name other metrics for some examples is refused (a mean over some
    examples only would read as one over all)."""
    outcomes = [task.outcomes(item.scores, item.positives) for item in scored]
    for item, outcome in zip(scored, outcomes):
        if outcomes and set(outcome) != set(outcomes[0]):
            raise VlbenchError(f"task '{task.name}': outcomes() gave {sorted(outcome)} for example '{item.id}' but {sorted(outcomes[0])} for '{scored[0].id}'; it must give the same metrics for every example")
    metrics, breakdown = aggregate(outcomes, [item.tags for item in scored])
    metrics.update(task.summarize({"metrics": metrics, "breakdown": breakdown}))
    return metrics, breakdown
