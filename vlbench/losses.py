"""The loss family shared by trainable matchers, on one example's score matrix.

- `bce`: binary cross-entropy over every (image, text) pair, scores as logits (paper Eq. 6).
- `ce`: cross-entropy over each positive's candidates (its row of texts and/or column of images).
- `hinge`: the positive against its hardest candidate, ``relu(margin - s_pos + max s_neg)``, as the
  released DSD code trains.

A positive's candidates are the other texts scored with its image (when there are several
texts) and the other images scored with its text (when there are several images).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

LOSSES = ("bce", "ce", "hinge")


def example_loss(scores: torch.Tensor, positives: Sequence[tuple[int, int]], loss: str, margin: float = 0.1) -> torch.Tensor:
    """The scalar loss of one example; `scores` is `[n_images, n_texts]`."""
    if loss == "bce":
        labels = torch.zeros_like(scores)
        for image, text in positives:
            labels[image, text] = 1.0
        return F.binary_cross_entropy_with_logits(scores, labels)
    terms = []
    for candidates, target in candidate_sets(scores, positives):
        if loss == "ce":
            terms.append(F.cross_entropy(candidates.unsqueeze(0), torch.tensor([target], device=scores.device)))
        elif loss == "hinge":
            negatives = torch.cat([candidates[:target], candidates[target + 1 :]])
            terms.append(F.relu(margin - candidates[target] + negatives.max()))
        else:
            raise ValueError(f"unknown loss '{loss}'; choose one of {', '.join(LOSSES)}")
    return torch.stack(terms).mean()


def candidate_sets(scores: torch.Tensor, positives: Sequence[tuple[int, int]]) -> list[tuple[torch.Tensor, int]]:
    """(candidate scores, index of the positive among them) for each positive and direction."""
    sets = []
    n_images, n_texts = scores.shape
    for image, text in positives:
        if n_texts > 1:
            sets.append((scores[image, :], text))
        if n_images > 1:
            sets.append((scores[:, text], image))
    return sets


def midpoint_bias(matrices: Sequence[torch.Tensor], positives: Sequence[Sequence[tuple[int, int]]]) -> float:
    """The bias that centres scores between the mean positive and the mean negative score: a
    rank-neutral start that keeps `bce` from spending its first steps on calibration alone."""
    positive, negative = [], []
    for scores, pairs in zip(matrices, positives):
        mask = torch.zeros_like(scores, dtype=torch.bool)
        for image, text in pairs:
            mask[image, text] = True
        positive.append(scores[mask])
        negative.append(scores[~mask])
    return -0.5 * (torch.cat(positive).mean() + torch.cat(negative).mean()).item()
