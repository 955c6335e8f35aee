"""`color-words`: a transparent heuristic whose scores a test can compute by hand."""

from __future__ import annotations

import re
from dataclasses import dataclass

from vlbench.types import Matcher

# Every pixel is assigned to its nearest palette colour; only the named colours are ever scored.
PALETTE = {
    "red": (255, 0, 0),
    "green": (0, 160, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 220, 0),
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "gray": (128, 128, 128),
}
NAMED = ("red", "green", "blue", "yellow", "black")


@dataclass
class ColorWordsOptions:
    ignore_background: bool = True


class ColorWordsMatcher(Matcher):
    """Score = mean, over the colour words in the text, of the fraction of the image's pixels
    whose nearest palette colour is that word; 0 for a text without colour words.

    With `ignore_background`, pixels nearest to white or gray do not count in the denominator.
    """

    name = "color-words"
    summary = "Heuristic: fraction of pixels nearest to each colour word in the text (predictable)."
    Options = ColorWordsOptions

    def score(self, images, texts):
        import torch

        fractions = torch.stack([self._colour_fractions(image.pixels) for image in images])
        columns = []
        for text in texts:
            words = [word for word in re.findall(r"[a-z]+", text.lower()) if word in NAMED]
            if words:
                columns.append(fractions[:, [list(PALETTE).index(word) for word in words]].mean(dim=1))
            else:
                columns.append(torch.zeros(len(images), dtype=torch.float64))
        return torch.stack(columns, dim=1)

    def _colour_fractions(self, pixels):
        import numpy as np
        import torch

        rgb = np.asarray(pixels, dtype=np.float64).reshape(-1, 3)
        palette = np.array(list(PALETTE.values()), dtype=np.float64)
        nearest = ((rgb[:, None, :] - palette[None, :, :]) ** 2).sum(-1).argmin(1)
        counts = np.bincount(nearest, minlength=len(PALETTE)).astype(np.float64)
        if self.options.ignore_background:
            counts[[list(PALETTE).index("white"), list(PALETTE).index("gray")]] = 0
        total = counts.sum()
        return torch.from_numpy(counts / total if total else counts)
