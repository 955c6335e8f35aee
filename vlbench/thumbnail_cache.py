"""Report thumbnails kept across runs, so a run over images that earlier runs showed encodes (and
decodes) none of them: one SQLite file, `$VLBENCH_CACHE/thumbnails.sqlite3`, mapping an image's
`LoadedImage.content_key` and the way thumbnails are made (size, JPEG quality, Pillow version) to
the thumbnail's data URI. SQLite serialises concurrent writers (torchrun ranks, parallel runs). A
cache that cannot be opened, read or written is not an error: the run goes on without it, after
one warning.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
from collections.abc import Iterable, Sequence
from importlib.metadata import version

from vlbench.config import cache_dir

BUSY_SECONDS = 30  # how long a write waits for another process's


class ThumbnailCache:
    """Thumbnails by image content key, for the recipe `recipe` (how they are made)."""

    def __init__(self, recipe: str) -> None:
        self.recipe = f"{recipe}, pillow {version('pillow')}"
        self.lock = threading.Lock()  # one connection, shared by the loading threads and the scoring thread
        self.connection: sqlite3.Connection | None = None
        self.path = cache_dir() / "thumbnails.sqlite3"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.connection = sqlite3.connect(self.path, timeout=BUSY_SECONDS, check_same_thread=False, isolation_level=None)
            self.connection.execute("PRAGMA synchronous=OFF")  # a cache: what a crash loses is encoded again
            self.connection.execute("CREATE TABLE IF NOT EXISTS thumbnails (recipe TEXT, key TEXT, uri TEXT, PRIMARY KEY (recipe, key))")
        except (OSError, sqlite3.Error) as error:
            self._give_up(error)

    def get(self, keys: Sequence[str]) -> dict[str, str]:
        """The cached data URIs of those of `keys` the cache holds."""
        if not keys:
            return {}
        with self.lock:
            if self.connection is None:
                return {}
            try:
                marks = ",".join("?" * len(keys))
                rows = self.connection.execute(f"SELECT key, uri FROM thumbnails WHERE recipe = ? AND key IN ({marks})", (self.recipe, *keys)).fetchall()
            except sqlite3.Error as error:
                self._give_up(error)
                return {}
        return dict(rows)

    def put(self, items: Iterable[tuple[str, str]]) -> None:
        """Keep (key, data URI) pairs, in one transaction."""
        rows = [(self.recipe, key, uri) for key, uri in items]
        if not rows:
            return
        with self.lock:
            if self.connection is None:
                return
            try:
                with self.connection:
                    self.connection.execute("BEGIN IMMEDIATE")
                    self.connection.executemany("INSERT OR IGNORE INTO thumbnails VALUES (?, ?, ?)", rows)
            except sqlite3.Error as error:
                self._give_up(error)

    def close(self) -> None:
        with self.lock:
            if self.connection is not None:
                self.connection.close()
                self.connection = None

    def _give_up(self, error: Exception) -> None:
        print(f"warning: the thumbnail cache ({self.path}) cannot be used ({error}); going on without it. Delete that file, or set VLBENCH_CACHE to a writable directory, to keep thumbnails across runs.", file=sys.stderr)
        if self.connection is not None:
            self.connection.close()
        self.connection = None
