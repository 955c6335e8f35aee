"""Content hashes of files, computed once per version of a file: a hash is kept in memory and, for a
file of 1 MiB or more, cached under `$VLBENCH_CACHE/hashes`, keyed by the file's absolute path,
inode, size and modification and change times, so a multi-gigabyte checkpoint is read again only
when it changes. A smaller file (an image) is read again by the next process: that costs about
what looking it up would, without a cache entry per image."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from vlbench.config import cache_dir

CACHED_FROM_BYTES = 1 << 20
_hashed: dict[tuple, str] = {}  # this process's hashes, by the stamp of the file's version


def file_sha256(path: Path) -> str:
    """The sha256 of `path`'s bytes (remembered while its inode, size and times are unchanged)."""
    path = Path(path).resolve()
    stat = path.stat()
    stamp = {"path": str(path), "inode": stat.st_ino, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns}
    key = tuple(stamp.values())
    if key not in _hashed:
        _hashed[key] = _cached_sha256(path, stamp) if stat.st_size >= CACHED_FROM_BYTES else _sha256(path)
    return _hashed[key]


def _cached_sha256(path: Path, stamp: dict) -> str:
    entry = cache_dir() / "hashes" / f"{hashlib.blake2b(str(path).encode(), digest_size=16).hexdigest()}.json"
    try:
        cached = json.loads(entry.read_text())
        if {key: cached.get(key) for key in stamp} == stamp:
            return cached["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = _sha256(path)
    _remember(entry, {**stamp, "sha256": digest})
    return digest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def files_sha256(paths: Iterable[Path], root: Path) -> str:
    """One hash over several files: each file's path relative to `root` and its sha256."""
    digest = hashlib.sha256()
    for path in sorted(Path(path) for path in paths):
        digest.update(f"{path.relative_to(root).as_posix()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def _remember(entry: Path, record: dict) -> None:
    """Cache a hash; an unwritable cache only costs hashing again next time."""
    from vlbench.records import atomic_write_text

    try:
        atomic_write_text(entry, json.dumps(record))
    except OSError:
        pass


def short(digest: str | None) -> str:
    """The first 12 hex digits of a hash, for messages."""
    return f"{digest[:12]}…" if digest else "none"

