"""A vlbench plugin: a trainable matcher comparing an image's mean colour with learned word colours."""

import zlib
from dataclasses import dataclass

import numpy as np
import torch

from vlbench.types import Matcher


@dataclass
class MeanColorOptions:
    buckets: int = 512  # words are hashed into this many learned colour vectors


class MeanColorMatcher(Matcher):
    """score(image, text) = (mean RGB of the image - 0.5) · (sum of the text's word vectors)."""

    name = "mean-color"
    summary = "Example plugin: image mean colour against learned per-word colours."
    trainable = True
    train_defaults = {"lr": 0.05, "epochs": 10}
    Options = MeanColorOptions

    def __init__(self, options, runtime):
        super().__init__(options, runtime)
        self.word_colors = torch.zeros(options.buckets, 3, requires_grad=True)

    def score(self, images, texts):
        means = torch.stack([torch.from_numpy(np.asarray(image.pixels, dtype=np.float32)).mean((0, 1)) / 255 - 0.5 for image in images])
        words = torch.stack([self.word_colors[[self._bucket(word) for word in text.lower().split()]].sum(0) for text in texts])
        return means @ words.T

    def _bucket(self, word):
        return zlib.crc32(word.encode()) % self.options.buckets

    def trainable_parameters(self):
        return [self.word_colors]

    def state_dict(self):
        return {"word_colors": self.word_colors.detach().clone()}

    def load_state_dict(self, state):
        with torch.no_grad():
            self.word_colors.copy_(state["word_colors"])
