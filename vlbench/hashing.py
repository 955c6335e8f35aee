"""Content hashes of files, computed once per version of a file: cached under
`$VLBENCH_CACHE/hashes`, keyed by the file's absolute path, inode, size and modification and change
times, so a multi-gigabyte checkpoint, or a dataset's images, are read again only when they change.
A checkpoint file has a cache entry of its own; many small files (images) share one per directory.

A file's times only tell its versions apart once they are older than the file system's timestamp
granularity (a clock tick on Linux, 1 to 2 s on some file systems): a file rewritten within the same
tick keeps them. So a hash is cached only for a file whose times lie `SETTLED_NS` or more before
its hashing began (git's "racily clean" entries, handled by not keeping them); a file written just
before is hashed again next time."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vlbench.config import cache_dir

SETTLED_NS = 3 * 10**9  # coarser than any file system's timestamps (FAT: 2 s), with a second for clock skew
now_ns = time.time_ns  # when hashing begins, against the file's times (tests move it)
CACHE_FORMAT = 2  # 2: only settled files' hashes (1, unnamed, kept any, so it is not read)


def file_sha256(path: Path) -> str:
    """The sha256 of `path`'s bytes (from the cache when its inode, size and times are unchanged)."""
    path = Path(path).resolve()
    started = now_ns()
    inode, size, mtime_ns, ctime_ns = _stamp(path)
    entry = _entry(f"{hashlib.blake2b(str(path).encode(), digest_size=16).hexdigest()}.json")
    stamp = {"path": str(path), "inode": inode, "size": size, "mtime_ns": mtime_ns, "ctime_ns": ctime_ns}
    try:
        cached = json.loads(entry.read_text())
        if {key: cached.get(key) for key in stamp} == stamp:
            return cached["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = _sha256(path)
    if _settled([mtime_ns, ctime_ns], started):
        _remember(entry, {**stamp, "sha256": digest})
    return digest


def source_sha256(*code: Any) -> str:
    """One sha256 of the source files of `code` (modules, classes or functions), in that order."""
    import inspect

    digest = hashlib.sha256()
    for item in code:
        path = inspect.getsourcefile(item) or inspect.getfile(item)  # an install without sources: its compiled file
        digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()


def many_files_sha256(paths: Iterable[Path]) -> dict[Path, str | None]:
    """The sha256 of each of many small files (a dataset's images; None where one cannot be read),
    remembered in one cache file per directory, by file name, inode, size and times: a dataset is
    read by its first run, and stat'ed by the next."""
    by_directory: dict[Path, list[Path]] = {}
    for path in paths:
        by_directory.setdefault(Path(path).absolute().parent, []).append(Path(path))
    hashes: dict[Path, str | None] = {}
    for directory, files in by_directory.items():
        entry = _directory_entry(directory)
        known = _directory_files(entry)
        changed = False
        for path in files:
            try:
                started = now_ns()
                stamp = _stamp(path)
                hashes[path] = _unchanged(known.get(path.name), stamp)
                if hashes[path] is None:
                    hashes[path] = _sha256(path)
                    if _settled(stamp[2:], started):
                        known[path.name], changed = [*stamp, hashes[path]], True
            except OSError:
                hashes[path] = None
        if changed:
            _remember(entry, {"directory": str(directory), "files": known})
    return hashes


_known: dict[Path, tuple[int | None, dict]] = {}  # a directory's cache file as last read: its mtime, its files
_known_lock = threading.Lock()


def known_sha256(path: Path) -> str | None:
    """The sha256 of image file `path` as `many_files_sha256` last cached it, if the file is
    unchanged since (same inode, size and times); None when unknown or changed. Reads no file
    but its directory's cache file, again only after that changed."""
    path = Path(path).absolute()
    try:
        stamp = _stamp(path)
    except OSError:
        return None
    with _known_lock:
        read_at, files = _known.get(path.parent, (None, {}))
        digest = _unchanged(files.get(path.name), stamp)
        if digest is None:
            entry = _directory_entry(path.parent)
            try:
                modified = entry.stat().st_mtime_ns
            except OSError:
                return None
            if modified != read_at:
                _known[path.parent] = (modified, _directory_files(entry))
                digest = _unchanged(_known[path.parent][1].get(path.name), stamp)
    return digest


def _stamp(path: Path) -> list[int]:
    """What tells one version of a file from another without reading it: inode, size, times."""
    stat = path.stat()
    return [stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _settled(times: list[int], started: int) -> bool:
    """Whether a file with these (modification, change) times, hashed from `started` on, cannot be
    rewritten without changing them: both lie `SETTLED_NS` or more before `started`."""
    return max(times) <= started - SETTLED_NS


def _unchanged(cached, stamp: list[int]) -> str | None:
    """The sha256 of a directory cache entry (`[*stamp, sha256]`) if its stamp is `stamp`."""
    return cached[4] if isinstance(cached, list) and len(cached) == 5 and cached[:4] == stamp else None


def _directory_files(entry: Path) -> dict:
    """The files a directory's cache file holds (none if it is missing or damaged)."""
    try:
        files = json.loads(entry.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return files if isinstance(files, dict) else {}


def _directory_entry(directory: Path) -> Path:
    return _entry(f"directory-{hashlib.blake2b(str(directory).encode(), digest_size=16).hexdigest()}.json")


def _entry(name: str) -> Path:
    return cache_dir() / "hashes" / f"{CACHE_FORMAT}-{name}"


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
    """Cache hashes (not synced to disk: they can be computed again); an unwritable cache only
    costs hashing again next time."""
    from vlbench.records import write_atomically

    try:
        write_atomically(entry, lambda handle: handle.write(json.dumps(record).encode()), durable=False)
    except OSError:
        pass


def short(digest: str | None) -> str:
    """The first 12 hex digits of a hash, for messages."""
    return f"{digest[:12]}…" if digest else "none"

