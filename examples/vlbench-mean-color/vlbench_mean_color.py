"""A vlbench plugin: a trainable matcher comparing an image's mean colour with learned word colours."""

import zlib
from dataclasses import dataclass

import numpy as np
import torch

from vlbench.options import check
from vlbench.types import Matcher


@dataclass
class MeanColorOptions:
    buckets: int = 512  # words are hashed into this many learned colour vectors

    def __post_init__(self):
        check(self.buckets >= 1, "buckets", f"must be at least 1, got {self.buckets}")


class MeanColorMatcher(Matcher):
    """score(image, text) = (mean RGB of the image - 0.5) · (sum of the text's word vectors)."""

    name = "mean-color"
    summary = "Example plugin: image mean colour against learned per-word colours."
    trainable = True
    train_defaults = {"lr": 0.05, "epochs": 10}
    Options = MeanColorOptions

    def __init__(self, options, runtime):
        super().__init__(options, runtime)
        # Everything that trains lives in one module: vlbench optimises its parameters and
        # stores its state_dict in the run record.
        self.trained = torch.nn.ParameterDict({"word_colors": torch.nn.Parameter(torch.zeros(options.buckets, 3))})

    def score(self, images, texts):
        means = torch.stack([torch.from_numpy(np.asarray(image.pixels, dtype=np.float32)).mean((0, 1)) / 255 - 0.5 for image in images])
        colors = self.trained["word_colors"]
        words = torch.stack([colors[[self._bucket(word) for word in text.lower().split()]].sum(0) for text in texts])
        return means @ words.T

    def _bucket(self, word):
        return zlib.crc32(word.encode()) % self.options.buckets
