"""Frozen-encoder features on disk, so a second evaluation does not run the encoder again.

A cache directory is keyed by what produced the features (the `producer`: model fingerprint,
library versions, device type, …). Inside it, each call that computes features writes them as one
shard (`<kind>/<name>.npz`: the items' content hashes and their features), renamed into place
whole: concurrent writers (torchrun ranks, parallel runs) each write their own shards, and a
killed run never leaves half a shard. A scan that finds `MERGE_AT` or more small shards merges
them into one (written whole before the small ones are removed), so the next run opens one file
rather than one per batch; a reader whose shard was merged away scans again and reads the merged
one. A shard that cannot be read is ignored and its items are computed again. Read items stay in
an in-process LRU, so a repeated image does not go back to disk. A cache directory that cannot be written is not an error: the run goes on without the
cache, after one warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlbench.config import cache_dir
from vlbench.records import write_atomically

STORE_LAYOUT = "shards-v1"  # part of a cache directory's identity: another layout gets another directory
MEMORY_BYTES = 256 * 2**20  # the in-process LRU's budget
SMALL_SHARD_BYTES = 2**20  # shards below this size are merged, once a scan finds `MERGE_AT` of them
MERGE_AT = 8
MERGED_SHARD_BYTES = 64 * 2**20  # the most features one merged shard holds
UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)  # a shard cut short or damaged


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


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # merged away meanwhile
        return 0


def _warn_unwritable(error: OSError) -> None:
    import sys

    print(f"warning: the feature cache cannot be written ({error.strerror}: {error.filename}); going on without it. Set VLBENCH_CACHE to a writable directory to keep features.", file=sys.stderr)


class FeatureCache:
    """One directory of feature shards per producer; `get` computes only what is missing."""

    def __init__(self, producer: dict[str, Any], root: Path | None = None, memory_bytes: int = MEMORY_BYTES) -> None:
        identity = json.dumps({"layout": STORE_LAYOUT, **producer}, sort_keys=True, default=str)
        self.directory = (root or cache_root()) / hashlib.sha256(identity.encode()).hexdigest()[:20]
        self.writable = True
        self.memory = _LeastRecentlyUsed(memory_bytes)
        self.shard_of: dict[tuple[str, str], Path] = {}  # (kind, key) -> the shard holding it
        self.scanned: set[Path] = set()
        if not (self.directory / "producer.json").exists():
            write_atomically(self.directory / "producer.json", lambda handle: handle.write(identity.encode()), durable=False)

    def get(self, kind: str, keys: Sequence[str], compute: Callable[[list[int]], torch.Tensor]) -> torch.Tensor:
        """Features `[len(keys), dim]` (float32, CPU) for distinct content hashes `keys`;
        `compute(indices)` returns the features of the `keys[i]` not cached yet."""
        found = {index: features for index, key in enumerate(keys) if (features := self.memory.get((kind, key))) is not None}
        absent = [index for index in range(len(keys)) if index not in found]
        if absent:
            self._read_into_memory(kind, [keys[index] for index in absent])
            found.update((index, features) for index in absent if (features := self.memory.get((kind, keys[index]))) is not None)
        missing = [index for index in range(len(keys)) if index not in found]
        if missing:
            computed = compute(missing).detach().float().cpu().numpy()
            for index, features in zip(missing, computed):
                found[index] = features
                self.memory.put((kind, keys[index]), features.copy())  # a copy: the LRU counts what it keeps alive
            self._write_shard(kind, [keys[index] for index in missing], computed)
        return torch.from_numpy(np.stack([found[index] for index in range(len(keys))]))

    def _read_into_memory(self, kind: str, keys: list[str]) -> None:
        """Read the shards holding `keys` into memory, scanning first for keys no known shard holds
        (another writer may have added them); a shard merged away meanwhile sends it to scan again."""
        for _ in range(2):
            if any((kind, key) not in self.shard_of for key in keys):
                self._scan(kind)
            shards = {self.shard_of[(kind, key)] for key in keys if (kind, key) in self.shard_of}
            if all([self._read_shard(kind, shard) for shard in shards]):
                return

    def _scan(self, kind: str) -> None:
        """Index the shards other writers (or earlier runs) added since the last scan: their keys
        only (an npz member is read on its own), so a large cache is not read to find a few items;
        small shards, when there are `MERGE_AT` of them, are merged instead."""
        try:
            names = sorted(name for name in os.listdir(self.directory / kind) if name.endswith(".npz"))
        except OSError:  # absent, or unreadable: what is missing is computed
            return
        new = [shard for shard in (self.directory / kind / name for name in names) if shard not in self.scanned]
        small = [shard for shard in new if _size(shard) < SMALL_SHARD_BYTES]
        if len(small) >= MERGE_AT and self.writable:
            self._merge(kind, small)
            new = [shard for shard in new if shard not in small]
        for shard in new:
            self.scanned.add(shard)
            try:
                with np.load(shard) as stored:
                    keys = stored["keys"].tolist()
            except UNREADABLE:
                continue
            for key in keys:
                self.shard_of.setdefault((kind, key), shard)

    def _merge(self, kind: str, shards: list[Path]) -> None:
        """Rewrite `shards` as merged shards (each item once, up to `MERGED_SHARD_BYTES` a shard),
        keeping their items in memory, then remove those that were read. Two processes merging the
        same shards at once each write a merged copy: duplicates, never a loss."""
        items: dict[str, np.ndarray] = {}
        read = []
        for shard in shards:
            self.scanned.add(shard)
            try:
                with np.load(shard) as stored:
                    keys, features = stored["keys"].tolist(), stored["features"]
            except UNREADABLE:  # damaged, or merged away by another process
                continue
            read.append(shard)
            for key, row in zip(keys, features):
                items.setdefault(key, row)
        keys = list(items)
        rows_per_shard = max(1, MERGED_SHARD_BYTES // max(1, next(iter(items.values())).nbytes)) if items else 1
        for start in range(0, len(keys), rows_per_shard):
            chunk = keys[start : start + rows_per_shard]
            if not self._write_shard(kind, chunk, np.stack([items[key] for key in chunk])):
                return  # nothing removed: the small shards still hold every item
        for key in keys:
            self.memory.put((kind, key), np.array(items[key]))  # a copy: the LRU counts what it keeps alive
        for shard in read:
            with contextlib.suppress(FileNotFoundError):  # another process merged it too
                shard.unlink()

    def _read_shard(self, kind: str, shard: Path) -> bool:
        """Put the shard's features in memory; a shard that cannot be read is forgotten (False), so
        its items are looked for again or computed again (and written to a new shard)."""
        try:
            with np.load(shard) as stored:
                keys, features = stored["keys"].tolist(), stored["features"]
        except UNREADABLE:
            self.shard_of = {item: held for item, held in self.shard_of.items() if held != shard}
            return False
        for key, row in zip(keys, features):
            self.memory.put((kind, key), np.array(row))  # a copy: the LRU counts what it keeps alive
        return True

    def _write_shard(self, kind: str, keys: list[str], features: np.ndarray) -> bool:
        """Write one shard (False when the cache cannot be written)."""
        if not self.writable:
            return False
        shard = self.directory / kind / f"{os.getpid()}-{uuid.uuid4().hex}.npz"
        try:
            write_atomically(shard, lambda handle: np.savez(handle, keys=np.array(keys), features=features), durable=False)
        except OSError as error:  # e.g. the disk filled up: keep scoring, stop caching
            self.writable = False
            _warn_unwritable(error)
            return False
        self.scanned.add(shard)
        for key in keys:
            self.shard_of[(kind, key)] = shard
        return True


class _LeastRecentlyUsed:
    """Arrays by key, dropping the least recently used once their bytes pass `budget`."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.items: OrderedDict[Any, np.ndarray] = OrderedDict()

    def get(self, key) -> np.ndarray | None:
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key, value: np.ndarray) -> None:
        if key in self.items:
            return
        self.items[key] = value
        self.used += value.nbytes
        while self.used > self.budget and len(self.items) > 1:
            _, dropped = self.items.popitem(last=False)
            self.used -= dropped.nbytes


def cached_features(cache: FeatureCache | None, kind: str, keys: Sequence[str], compute: Callable[[list[int]], torch.Tensor], device) -> torch.Tensor:
    """Features of `keys` (content hashes, repeats allowed: each distinct one is looked up or
    computed once) from `cache`, or computed when there is no cache: float32 on `device`, a normal
    tensor (usable with autograd). `compute(indices)` encodes `keys[i]` for the given indices."""
    distinct = list(dict.fromkeys(keys))
    first = {key: index for index, key in reversed(list(enumerate(keys)))}

    def compute_distinct(indices: list[int]) -> torch.Tensor:
        return compute([first[distinct[index]] for index in indices])

    with torch.inference_mode():
        features = cache.get(kind, distinct, compute_distinct) if cache is not None else compute_distinct(list(range(len(distinct))))
        if len(distinct) < len(keys):
            position = {key: index for index, key in enumerate(distinct)}
            features = features[torch.tensor([position[key] for key in keys])]
    return features.float().to(device).clone()
