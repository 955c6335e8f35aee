"""What a run keeps of each example it scores, so `vlbench report` needs no data and no model.

- `examples.jsonl`: one line per example: its texts and its images' keys (a crop's also the key of
  the picture it is cut from).
- `thumbnails.jsonl` (unless thumbnails are off): one line per image, its key as `id` and a small
  JPEG (a data URI, at most `THUMBNAIL_PIXELS` on a side): an image shared by many examples is
  encoded and stored once, and an image an earlier run showed is not encoded again
  (`vlbench.thumbnail_cache`).
- `attention.jsonl` (with `--save-attention`, matchers with `records_attention`): one line per
  example: for each (image, text) pair, the text's tokens and one map per token over the image,
  `size`×`size` uint8 (each map scaled to 0–255), base64 in token order.

All are append-only and sharded by rank like `scores.jsonl`; readers take the union by id.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

from vlbench.records import RunDirectory
from vlbench.thumbnail_cache import ThumbnailCache
from vlbench.types import Example, LoadedImage, Matcher

THUMBNAIL_PIXELS = 96
JPEG_QUALITY = 80
THUMBNAIL_RECIPE = f"JPEG quality {JPEG_QUALITY}, at most {THUMBNAIL_PIXELS} pixels a side"  # keys the thumbnail cache

Batch = Sequence[tuple[Example, Sequence[LoadedImage]]]


def thumbnail_uri(pixels) -> str:
    """A JPEG data URI of `pixels` shrunk to at most `THUMBNAIL_PIXELS` on its longer side."""
    small = pixels.convert("RGB")
    small.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def example_line(example: Example) -> str:
    images = [{"key": image.key, **({"picture": image.picture} if image.picture else {})} for image in example.images]
    return json.dumps({"id": example.id, "texts": list(example.texts), "images": images}) + "\n"


def thumbnail_line(image: LoadedImage, uri: str | None = None) -> str:
    """The image's line of `thumbnails.jsonl`, with `uri` if given, else its thumbnail encoded."""
    return json.dumps({"id": image.key, "uri": uri or thumbnail_uri(image.pixels)}) + "\n"


def attention_line(example_id: str, record: dict[str, Any]) -> str:
    """`record`: {"size": s, "pairs": [{"image", "text", "tokens", "maps": uint8 array [tokens, s, s]}]}."""
    pairs = [
        {"image": pair["image"], "text": pair["text"], "tokens": list(pair["tokens"]), "maps": base64.b64encode(pair["maps"].tobytes()).decode()}
        for pair in record["pairs"]
    ]
    return json.dumps({"id": example_id, "size": record["size"], "pairs": pairs}) + "\n"


class ExampleRecorder:
    """Appends what the report shows of each scored batch. `prepare(images)` may run in the image
    loading threads: it finds (in `cache`) or encodes the thumbnails of images not stored yet,
    ahead of `record`."""

    def __init__(self, append_example, append_thumbnail, append_attention, stored: set[str], matcher: Matcher, cache: ThumbnailCache | None = None) -> None:
        self.append_example, self.append_thumbnail, self.append_attention = append_example, append_thumbnail, append_attention
        self.stored = stored  # image keys whose thumbnail this run already holds
        self.encoded: dict[str, str] = {}  # thumbnail lines made ahead by `prepare`
        self.fresh: list[tuple[str, str]] = []  # (content key, data URI) encoded here, for the cache
        self.lock = threading.Lock()
        self.matcher = matcher
        self.cache = cache

    def prepare(self, images: Sequence[LoadedImage]) -> None:
        if self.append_thumbnail is None:
            return
        with self.lock:
            wanted = {image.key: image for image in images if image.key not in self.stored and image.key not in self.encoded}
        lines = self._lines(wanted)
        with self.lock:
            for key, line in lines.items():
                if key not in self.stored:  # `record` may have stored it meanwhile
                    self.encoded.setdefault(key, line)

    def record(self, batch: Batch) -> None:
        """Append the batch's example lines, the thumbnails of its images not stored yet and, when
        saving attention, the maps the matcher kept of that batch."""
        self.append_example([example_line(example) for example, _ in batch])
        if self.append_thumbnail is not None:
            with self.lock:
                new = {image.key: image for _, images in batch for image in images if image.key not in self.stored}
                ready = {key: self.encoded.pop(key) for key in new if key in self.encoded}
                self.stored.update(new)
            ready.update(self._lines({key: image for key, image in new.items() if key not in ready}))
            self.append_thumbnail([ready[key] for key in new])
            with self.lock:
                fresh, self.fresh = self.fresh, []
            if self.cache is not None:
                self.cache.put(fresh)
        if self.append_attention is not None:
            kept = self.matcher.take_attention()
            self.append_attention([attention_line(example.id, maps) for (example, _), maps in zip(batch, kept, strict=True)])

    def _lines(self, images: dict[str, LoadedImage]) -> dict[str, str]:
        """Thumbnail lines of `images` (by key): from the cache, else encoded (and noted for it)."""
        if not images:
            return {}
        cached = self.cache.get([image.content_key for image in images.values()]) if self.cache is not None else {}
        lines, fresh = {}, []
        for key, image in images.items():
            uri = cached.get(image.content_key)
            if uri is None:
                uri = thumbnail_uri(image.pixels)
                fresh.append((image.content_key, uri))
            lines[key] = thumbnail_line(image, uri)
        with self.lock:
            self.fresh += fresh
        return lines


@contextmanager
def example_recorder(run_dir: RunDirectory, rank: int | None, matcher: Matcher, thumbnails: bool, save_attention: bool) -> Iterator[ExampleRecorder]:
    """Yields the run's `ExampleRecorder`: `record(batch)` after each batch is scored."""
    with ExitStack() as files:
        append_example = files.enter_context(run_dir.line_appender("examples", rank))
        append_thumbnail = files.enter_context(run_dir.line_appender("thumbnails", rank)) if thumbnails else None
        append_attention = files.enter_context(run_dir.line_appender("attention", rank)) if save_attention else None
        stored = set(run_dir.own_lines("thumbnails", rank)) if thumbnails else set()
        cache = ThumbnailCache(THUMBNAIL_RECIPE) if thumbnails else None
        if cache is not None:
            files.callback(cache.close)
        yield ExampleRecorder(append_example, append_thumbnail, append_attention, stored, matcher, cache)
