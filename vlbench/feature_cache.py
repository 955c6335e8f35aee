"""Frozen-encoder features on disk, so a second evaluation does not run the encoder again.

A cache directory is keyed by what produced the features (the `producer`: model fingerprint,
the code that computes them, library versions, device type, …). Inside it, each call that computes features writes them as one
shard (`<kind>/<name>.npz`: the items' content hashes and their features), renamed into place
whole: concurrent writers (torchrun ranks, parallel runs) each write their own shards, and a
killed run never leaves half a shard. A process's first look into a cache merges the small
shards earlier runs left (one per batch) into shards of up to 64 MiB, each written and synced
before the small ones are removed, so a later run opens a few files rather than one per batch;
one process merges at a time (a lock file), and a reader whose shard was merged away indexes the
cache again and reads the merged one. A shard that cannot be read is ignored and its items are
computed again. Read items stay in an in-process LRU, so a repeated image does not go back to
disk. A cache directory that cannot be written is not an error: the run goes on without the
cache, after one warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlbench.config import cache_dir
from vlbench.hashing import source_sha256
from vlbench.records import write_atomically

STORE_LAYOUT = "shards-v1"  # part of a cache directory's identity: another layout gets another directory
ENCODE_BATCH = 8  # items per encoder pass, always: an encoder rounds an item by the batch's size
ENCODING = f"batches of {ENCODE_BATCH}, the last filled up with other items, then repeats"  # part of a cache directory's identity too
MEMORY_BYTES = 256 * 2**20  # the in-process LRU's budget
SMALL_SHARD_BYTES = 2**20  # shards below this size are merged, when there are `MERGE_AT` of them
MERGE_AT = 8
MERGED_SHARD_BYTES = 64 * 2**20  # about the most features one merged shard holds
MERGE_LOCK = "merging.lock"
STALE_LOCK_SECONDS = 600  # a lock this old was left by a merge that died
UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, RuntimeError, NotImplementedError)  # a shard cut short or damaged (a flipped flag bit reads as encryption or an unknown compression)


def cache_root() -> Path:
    """`$VLBENCH_CACHE/features` (default `~/.cache/vlbench/features`)."""
    return cache_dir() / "features"


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def device_identity(device: str) -> dict[str, Any]:
    """What decides a device's float rounding beyond the library versions, so a cache shared by
    machines (a cluster's nodes) never hands one machine's features to another: for a GPU its
    model, compute capability, CUDA and cuDNN versions and TF32 settings; for the CPU its model
    name, architecture, the vector instructions PyTorch's kernels use and PyTorch's thread count
    (which changes how reductions are split: the mini SD's latents differ in the last bits between
    1 and 2 threads, and a training can amplify that)."""
    import platform

    import torch

    from vlbench.runtime import cpu_name

    chosen = torch.device(device)
    if chosen.type == "cuda":
        index = chosen.index if chosen.index is not None else torch.cuda.current_device()
        return {
            "device": "cuda",
            "gpu": torch.cuda.get_device_name(index),
            "capability": list(torch.cuda.get_device_capability(index)),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "tf32": [torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32],
        }
    return {"device": chosen.type, "cpu": cpu_name(), "machine": platform.machine(), "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}


def code_sha256(*computing: Any) -> str:
    """`hashing.source_sha256` of `computing` (the classes or functions that compute a producer's
    features), this module (batching) and `vlbench.types` (image decoding): part of a producer, so
    features that an edit or another release computes differently are never read back into a run
    of today's code."""
    import sys

    import vlbench.types

    return source_sha256(*computing, sys.modules[__name__], vlbench.types)


def open_feature_cache(producer: dict[str, Any], enabled: bool = True) -> FeatureCache | None:
    """The cache of `producer`'s features, or None when disabled or not writable (with a warning)."""
    if not enabled:
        return None
    try:
        return FeatureCache(producer)
    except OSError as error:
        _warn_unwritable(error)
        return None


def _mergeable(shard: Path) -> bool:
    """Small, and this user's (so this process can remove it once merged)."""
    try:
        stat = shard.stat()
    except OSError:  # merged away meanwhile
        return False
    return stat.st_size < SMALL_SHARD_BYTES and stat.st_uid == getattr(os, "getuid", lambda: stat.st_uid)()


@contextlib.contextmanager
def _merge_lock(directory: Path) -> Iterator[bool]:
    """Whether this process may merge in `directory` (no other process is merging there). Two
    processes that both find a stale lock may both merge: duplicates, never a loss."""
    lock = directory / MERGE_LOCK
    with contextlib.suppress(OSError):
        if time.time() - lock.stat().st_mtime > STALE_LOCK_SECONDS:
            lock.unlink()
    try:
        descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except OSError:  # held by another process, or not writable
        yield False
        return
    mine = os.fstat(descriptor).st_ino
    os.close(descriptor)
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):
            if lock.stat().st_ino == mine:  # not a lock another process took over as stale
                lock.unlink()


def _warn_unwritable(error: OSError) -> None:
    import sys

    print(f"warning: the feature cache cannot be written ({error.strerror}: {error.filename}); going on without it. Set VLBENCH_CACHE to a writable directory to keep features.", file=sys.stderr)


class FeatureCache:
    """One directory of feature shards per producer; `get` computes only what is missing."""

    def __init__(self, producer: dict[str, Any], root: Path | None = None, memory_bytes: int = MEMORY_BYTES) -> None:
        identity = json.dumps({"layout": STORE_LAYOUT, "encoding": ENCODING, **producer}, sort_keys=True, default=str)
        self.directory = (root or cache_root()) / hashlib.sha256(identity.encode()).hexdigest()[:20]
        self.writable = True
        self.memory = _LeastRecentlyUsed(memory_bytes)
        self.shard_of: dict[tuple[str, str], Path] = {}  # (kind, key) -> the shard holding it
        self.scanned: set[Path] = set()
        self.merge_tried: set[str] = set()  # kinds whose small shards this process has tried to merge
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
            found.update(zip(missing, self.put(kind, [keys[index] for index in missing], compute(missing))))
        return torch.from_numpy(np.stack([found[index] for index in range(len(keys))]))

    def put(self, kind: str, keys: list[str], features: torch.Tensor) -> np.ndarray:
        """Keep the computed `features` of `keys` (in memory and as one shard); returns them as
        float32 rows."""
        computed = features.detach().float().cpu().numpy()
        for key, row in zip(keys, computed):
            self.memory.put((kind, key), row.copy())  # a copy: the LRU counts what it keeps alive
        self._write_shard(kind, keys, computed)
        return computed

    def index(self, kind: str) -> None:
        """Learn which items of `kind` the cache holds (merging small shards first), so `holds`
        can answer; `get` does it by itself."""
        self._scan(kind)

    def holds(self, kind: str, key: str) -> bool:
        """Whether `get` would find `key` without computing it, as far as this process knows (from
        the last `index` or `get`). Reads only: safe beside a `get` on another thread."""
        return (kind, key) in self.memory.items or (kind, key) in self.shard_of

    def _read_into_memory(self, kind: str, keys: list[str]) -> None:
        """Read the shards holding `keys` into memory, scanning first for keys no known shard holds
        (another writer may have added them); a shard gone meanwhile (merged by another process)
        sends it to index the cache again."""
        for _ in range(2):
            complete = self._scan(kind) if any((kind, key) not in self.shard_of for key in keys) else True
            shards = {self.shard_of[(kind, key)] for key in keys if (kind, key) in self.shard_of}
            if all([self._read_shard(kind, shard) for shard in shards]) and complete:
                return
            self.scanned = {shard for shard in self.scanned if shard.parent != self.directory / kind}
            self.shard_of = {item: shard for item, shard in self.shard_of.items() if item[0] != kind}

    def _scan(self, kind: str) -> bool:
        """Index the shards other writers (or earlier runs) added since the last scan: their keys
        only (an npz member is read on its own), so a large cache is not read to find a few items.
        The first scan of a kind merges small shards first. False if a listed shard was gone
        before it was read (merged away meanwhile)."""
        try:
            names = sorted(name for name in os.listdir(self.directory / kind) if name.endswith(".npz"))
        except OSError:  # absent, or unreadable: what is missing is computed
            return True
        new = [shard for shard in (self.directory / kind / name for name in names) if shard not in self.scanned]
        if kind not in self.merge_tried:
            self.merge_tried.add(kind)
            new = self._merge_small(kind, new)
        complete = True
        for shard in new:
            try:
                with np.load(shard) as stored:
                    keys = stored["keys"].tolist()
            except FileNotFoundError:
                complete = False
                continue
            except UNREADABLE:
                self.scanned.add(shard)
                continue
            self.scanned.add(shard)
            for key in keys:
                self.shard_of.setdefault((kind, key), shard)
        return complete

    def _merge_small(self, kind: str, shards: list[Path]) -> list[Path]:
        """Merge the small shards among `shards` in groups of about `MERGED_SHARD_BYTES` (unless
        another process is merging); returns the shards left to index."""
        small = [shard for shard in shards if _mergeable(shard)]
        if len(small) < MERGE_AT or not self.writable:
            return shards
        merged: set[Path] = set()
        with _merge_lock(self.directory / kind) as held:
            if not held:
                return shards
            for group, items in _merge_groups(small):
                if len(group) < 2:  # nothing to gain
                    continue
                if not self._replace(kind, group, items):
                    break  # not writable: the small shards stay, and are indexed
                merged.update(group)
            self.scanned.update(merged)
        return [shard for shard in shards if shard not in merged]

    def _replace(self, kind: str, group: list[Path], items: dict[str, np.ndarray]) -> bool:
        """Write `items` as one shard, synced, then remove the shards of `group` it replaces (a
        crash before the removals are on disk leaves duplicates, never a loss)."""
        keys = list(items)
        if not self._write_shard(kind, keys, np.stack([items[key] for key in keys]), durable=True):
            return False
        for key in keys:
            self.memory.put((kind, key), np.array(items[key]))  # a copy: the LRU counts what it keeps alive
        for shard in group:
            with contextlib.suppress(OSError):  # removed by a process that took a stale lock too
                shard.unlink()
        return True

    def _read_shard(self, kind: str, shard: Path) -> bool:
        """Put the shard's features in memory; a shard that cannot be read is forgotten (False), so
        its items are looked for again or computed again (and written to a new shard)."""
        try:
            keys, features = _shard_contents(shard)
        except UNREADABLE:
            self.shard_of = {item: held for item, held in self.shard_of.items() if held != shard}
            return False
        for key, row in zip(keys, features):
            self.memory.put((kind, key), np.array(row))  # a copy: the LRU counts what it keeps alive
        return True

    def _write_shard(self, kind: str, keys: list[str], features: np.ndarray, durable: bool = False) -> bool:
        """Write one shard (False when the cache cannot be written); synced if `durable`."""
        if not self.writable:
            return False
        shard = self.directory / kind / f"{os.getpid()}-{uuid.uuid4().hex}.npz"
        try:
            write_atomically(shard, lambda handle: np.savez(handle, keys=np.array(keys), features=features), durable=durable)
        except OSError as error:  # e.g. the disk filled up: keep scoring, stop caching
            self.writable = False
            _warn_unwritable(error)
            return False
        self.scanned.add(shard)
        for key in keys:
            self.shard_of[(kind, key)] = shard
        return True


def _shard_contents(shard: Path) -> tuple[list[str], np.ndarray]:
    """A shard's keys and features; raises one of `UNREADABLE` when it is damaged or gone."""
    with np.load(shard) as stored:
        return stored["keys"].tolist(), stored["features"]


def _merge_groups(shards: list[Path]) -> Iterator[tuple[list[Path], dict[str, np.ndarray]]]:
    """The readable `shards` in order, in groups holding about `MERGED_SHARD_BYTES` of features,
    each with its items (each key once). Unreadable ones (damaged, or merged away) are left out:
    they are indexed, or skipped, as any other shard."""
    group: list[Path] = []
    items: dict[str, np.ndarray] = {}
    for shard in shards:
        try:
            keys, features = _shard_contents(shard)
        except UNREADABLE:
            continue
        group.append(shard)
        items.update((key, row) for key, row in zip(keys, features) if key not in items)
        if len(items) * features[0].nbytes >= MERGED_SHARD_BYTES:
            yield group, items
            group, items = [], {}
    if group:
        yield group, items


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


def cached_features(
    cache: FeatureCache | None,
    kind: str,
    keys: Sequence[str],
    items: Sequence[Any],
    encode: Callable[[list[Any]], torch.Tensor],
    device,
    fill: Callable[[int], list[tuple[str, Any]]] | None = None,
) -> torch.Tensor:
    """Features of `items`, keyed by their content hashes `keys` (repeats allowed: each distinct
    one is looked up or computed once), from `cache`, or computed when there is no cache: float32
    on `device`, a normal tensor (usable with autograd) in the contiguous layout.

    `encode(items)` runs on exactly `ENCODE_BATCH` items at a time, so that an item's features are a
    function of the item alone: an encoder rounds an item's features differently with the size of
    its batch (not with the other items or its place in it, tested), and a cache filled by one run
    would then change what another run trains on. The last pass is filled up with `fill(n)`, up
    to n (key, item) pairs the cache lacks that a later call will ask for (their features are
    stored for it), then with repeats of its last item."""
    distinct: dict[str, Any] = {}
    for key, item in zip(keys, items):
        distinct.setdefault(key, item)
    order = list(distinct)

    def compute_distinct(indices: list[int]) -> torch.Tensor:
        wanted = [distinct[order[index]] for index in indices]
        if not wanted:
            return encode([])
        passes = [wanted[start : start + ENCODE_BATCH] for start in range(0, len(wanted), ENCODE_BATCH)]
        last = len(passes[-1])
        ahead = []
        if fill is not None and cache is not None and last < ENCODE_BATCH:
            ahead = [(key, item) for key, item in fill(ENCODE_BATCH - last) if key not in distinct]  # a loading thread may hand over again one asked for now
        passes[-1] = passes[-1] + [item for _, item in ahead]
        encoded = [encode(chosen + chosen[-1:] * (ENCODE_BATCH - len(chosen))) for chosen in passes]
        if ahead:
            cache.put(kind, [key for key, _ in ahead], encoded[-1][last : last + len(ahead)])
        encoded[-1] = encoded[-1][:last]
        return torch.cat(encoded)

    with torch.inference_mode():
        features = cache.get(kind, order, compute_distinct) if cache is not None else compute_distinct(list(range(len(order))))
        if len(order) < len(keys):
            position = {key: index for index, key in enumerate(order)}
            features = features[torch.tensor([position[key] for key in keys])]
    return features.to(device=device, dtype=torch.float32, memory_format=torch.contiguous_format, copy=True)  # one layout, cached or not: a convolution rounds differently on channels-last input
