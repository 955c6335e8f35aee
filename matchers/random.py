"""`random`: a seeded chance-level matcher."""

from __future__ import annotations

import hashlib

from vlbench.types import Matcher


class RandomMatcher(Matcher):
    """Each (image, text) pair gets a uniform score in [0, 1) hashed from (seed, image key, text),
    so a pair's score is the same whatever batch, order or process it is scored in."""

    name = "random"
    summary = "Chance level: a uniform score per (seed, image, text), independent of batching."

    def score(self, images, texts):
        import torch

        return torch.tensor([[self._uniform(image.key, text) for text in texts] for image in images], dtype=torch.float64)

    def _uniform(self, image_key: str, text: str) -> float:
        digest = hashlib.blake2b(f"{self.runtime.seed}\0{image_key}\0{text}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64
