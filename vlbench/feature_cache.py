"""Frozen-encoder features on disk, so a second evaluation does not run the encoder again.

A cache directory is keyed by what produced the features (the `producer`: model fingerprint,
library versions, device type, …); inside it, each item is one `.npy` file named by the item's
content hash (an image's pixels, a text's characters). Files are renamed into place whole, so
concurrent or killed runs never leave a half-written feature; one that cannot be read (a crash
before the data reached the disk) is computed again. A cache directory that cannot be written is
not an error: the run goes on without the cache, after one warning.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlbench.config import cache_dir
from vlbench.records import write_atomically


def cache_root() -> Path:
    """`$VLBENCH_CACHE/features` (default `~/.cache/vlbench/features`)."""
    return cache_dir() / "features"


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def open_feature_cache(producer: dict[str, Any], enabled: bool = True) -> FeatureCache | None:
    """The cache of `producer`'s features, or None when disabled or not writable (with a warning)."""
    if not enabled:
        return None
    try:
        return FeatureCache(producer)
    except OSError as error:
        _warn_unwritable(error)
        return None


def _warn_unwritable(error: OSError) -> None:
    import sys

    print(f"warning: the feature cache cannot be written ({error.strerror}: {error.filename}); going on without it. Set VLBENCH_CACHE to a writable directory to keep features.", file=sys.stderr)


class FeatureCache:
    """One directory of features per producer; `get` computes only what is missing."""

    def __init__(self, producer: dict[str, Any], root: Path | None = None) -> None:
        identity = json.dumps(producer, sort_keys=True, default=str)
        self.directory = (root or cache_root()) / hashlib.sha256(identity.encode()).hexdigest()[:20]
        self.writable = True
        if not (self.directory / "producer.json").exists():
            write_atomically(self.directory / "producer.json", lambda handle: handle.write(identity.encode()), durable=False)

    def get(self, kind: str, keys: Sequence[str], compute: Callable[[list[int]], torch.Tensor]) -> torch.Tensor:
        """Features `[len(keys), dim]` (float32, CPU) for content hashes `keys`; `compute(indices)`
        returns the features of the `keys[i]` not cached yet."""
        paths = [self.directory / kind / key[:2] / f"{key}.npy" for key in keys]
        found = {index: features for index, path in enumerate(paths) if (features := _read(path)) is not None}
        missing = [index for index in range(len(keys)) if index not in found]
        if missing:
            computed = compute(missing).detach().float().cpu().numpy()
            for index, features in zip(missing, computed):
                found[index] = features
                if self.writable:
                    try:
                        write_atomically(paths[index], lambda handle, features=features: np.save(handle, features), durable=False)
                    except OSError as error:  # e.g. the disk filled up: keep scoring, stop caching
                        self.writable = False
                        _warn_unwritable(error)
        return torch.from_numpy(np.stack([found[index] for index in range(len(keys))]))


def _read(path: Path) -> np.ndarray | None:
    try:
        return np.load(path)
    except (OSError, ValueError, EOFError):  # absent, or cut short by a crash: compute again
        return None


def cached_features(cache: FeatureCache | None, kind: str, keys: Sequence[str], compute: Callable[[list[int]], torch.Tensor], device) -> torch.Tensor:
    """`cache.get(kind, keys, compute)`, or `compute` of every key when there is no cache: float32
    on `device`, a normal tensor (usable with autograd)."""
    with torch.inference_mode():
        features = cache.get(kind, keys, compute) if cache is not None else compute(list(range(len(keys))))
    return features.float().to(device).clone()
