"""Scoring examples with a matcher, appending each score matrix to the run record as it goes."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any

from vlbench.errors import VlbenchError
from vlbench.progress import progress_bar, run_label
from vlbench.records import ScoredExample
from vlbench.types import Example, ImageRef, LoadedImage, Matcher


class RecentImages:
    """The image files loaded last, up to `budget` bytes of decoded pixels and `count` images,
    each handed to every example that shows it while it stays (ComVG shows 524 images in 5,400
    examples): one decode, and one pixel hash, per stay. Images a task renders (no file) are
    loaded each time: their key alone need not tell two renderings apart. Thread-safe."""

    def __init__(self, budget: int = 64 * 2**20, count: int = 1024) -> None:
        self.budget, self.count, self.held = budget, count, 0
        self.images: OrderedDict[ImageRef, LoadedImage] = OrderedDict()
        self.sizes: dict[ImageRef, int] = {}  # decoded bytes of the held images
        self.lock = threading.Lock()

    def load(self, ref: ImageRef) -> LoadedImage:
        if ref.path is None:
            return LoadedImage.of(ref)
        with self.lock:
            image = self.images.get(ref)
            if image is not None:
                self.images.move_to_end(ref)
                return image
            image = self.images[ref] = LoadedImage.of(ref, on_decode=lambda size: self._decoded(ref, image, size))
            self._evict()
        return image

    def _decoded(self, ref: ImageRef, image: LoadedImage, size: int) -> None:
        with self.lock:
            if self.images.get(ref) is image:
                self.sizes[ref] = size
                self.held += size
                self._evict()

    def _evict(self) -> None:
        while (self.held > self.budget or len(self.images) > self.count) and len(self.images) > 1:
            self.held -= self.sizes.pop(self.images.popitem(last=False)[0], 0)


def load_images(example: Example, recent: RecentImages | None = None) -> list[LoadedImage]:
    """The example's images, decoded on first use (through `recent`, if given)."""
    return [recent.load(ref) if recent is not None else LoadedImage.of(ref) for ref in example.images]


def prepared_images(example: Example, recent: RecentImages | None, prepare: Callable[[list[LoadedImage]], None]) -> list[LoadedImage]:
    """The example's images after `prepare(images)` (a matcher's `prepare_images`: decoding what
    it will need); an image that cannot be read raises `VlbenchError` naming the example."""
    images = load_images(example, recent)
    try:
        prepare(images)
    except VlbenchError as error:
        raise VlbenchError(f"example '{example.id}': {error}") from None
    return images


def prefetched(
    examples: Sequence[Example],
    workers: int = 4,
    window: int = 32,
    prepare: Callable[[list[LoadedImage]], None] | None = None,
) -> Iterator[tuple[Example, Future]]:
    """(example, future of its images) in order, preparing up to `window` examples ahead in
    threads (`prepare(images)`: decoding what scoring will need), so at most `window` examples'
    images are held in memory; errors name the example. Examples that show the same image while
    it is among the last images loaded (64 MiB of pixels, 1,024 images) get the same
    `LoadedImage` (`RecentImages`).

    Threads rather than DataLoader worker processes: decoding releases the GIL, nothing is pickled
    across processes, and no process is forked after CUDA or a model has been initialised."""
    if not examples:
        return

    recent = RecentImages()

    def load(example: Example) -> list[LoadedImage]:
        return prepared_images(example, recent, prepare or (lambda images: None))

    pending = iter(examples)
    with ThreadPoolExecutor(workers) as pool:
        queue = deque((example, pool.submit(load, example)) for example in islice(pending, window))
        while queue:
            example, future = queue.popleft()
            following = next(pending, None)
            if following is not None:
                queue.append((following, pool.submit(load, following)))
            yield example, future


def score_examples(
    matcher: Matcher,
    examples: Sequence[Example],
    batch_size: int,
    append: Callable[[list[ScoredExample]], None],
    on_bad_example: str = "error",
    workers: int = 4,
    record: Callable[[list[tuple[Example, list[LoadedImage]]]], None] | None = None,
    prepare: Callable[[list[LoadedImage]], None] | None = None,
) -> dict[str, str]:
    """Score `examples` in batches of `batch_size` examples, appending each batch's results (and
    passing each scored batch to `record`, if given). The loading threads run the matcher's
    `prepare_images`, then `prepare` if given, on each example's images.

    An example whose images cannot be loaded stops the run, or with ``on_bad_example="skip"`` is
    left out; returns the skipped ids with their errors."""
    import torch

    skipped: dict[str, str] = {}
    batch: list[tuple[Example, list[LoadedImage]]] = []
    with torch.inference_mode(), progress_bar("scoring" if run_label.get() else f"scoring ({matcher.name})", total=len(examples)) as advance:
        for example, future in prefetched(examples, workers, prepare=_both(matcher.prepare_images, prepare)):
            try:
                batch.append((example, future.result()))
            except VlbenchError as error:
                if on_bad_example != "skip":
                    raise
                skipped[example.id] = str(error)
                advance(1)
            if len(batch) == batch_size:
                _score_finding_bad_images(matcher, batch, append, record, on_bad_example, skipped)
                advance(len(batch))
                batch = []
        if batch:
            _score_finding_bad_images(matcher, batch, append, record, on_bad_example, skipped)
            advance(len(batch))
    return skipped


def _both(first: Callable[[list[LoadedImage]], None], then: Callable[[list[LoadedImage]], None] | None) -> Callable[[list[LoadedImage]], None]:
    if then is None:
        return first
    return lambda images: (first(images), then(images))


def _score_finding_bad_images(matcher: Matcher, batch, append: Callable, record: Callable | None, on_bad_example: str, skipped: dict[str, str]) -> None:
    """Score `batch`. An image the matcher's `prepare_images` left undecoded that cannot be read
    fails while the batch is scored: the examples showing one are then found and named, and with
    "skip" left out while the others are scored."""
    try:
        _score_batch(matcher, batch, append, record)
    except VlbenchError:
        bad = {}
        for example, images in batch:
            try:
                for image in images:
                    image.pixels  # noqa: B018 - decoded to find the image that fails
            except VlbenchError as error:
                bad[example.id] = f"example '{example.id}': {error}"
        if not bad:
            raise
        if on_bad_example != "skip":
            raise VlbenchError(next(iter(bad.values()))) from None
        skipped.update(bad)
        good = [(example, images) for example, images in batch if example.id not in bad]
        if good:
            _score_batch(matcher, good, append, record)


def _score_batch(matcher: Matcher, batch: list[tuple[Example, list[LoadedImage]]], append: Callable, record: Callable | None) -> None:
    matrices = list(matcher.score_examples([(images, example.texts) for example, images in batch]))
    if len(matrices) != len(batch):
        raise VlbenchError(f"matcher '{matcher.name}' returned {len(matrices)} score matrices from score_examples for {len(batch)} examples; return one per example, in their order")
    scored = [checked_scores(matcher, example, matrix) for (example, _), matrix in zip(batch, matrices)]
    if record is not None:
        record(batch)  # before the scores: an example with scores always has its record
    append(scored)


def checked_scores(matcher: Matcher, example: Example, matrix: Any) -> ScoredExample:
    """`example`'s scores as stored, once `matrix` is found to be a tensor `[n_images, n_texts]`
    (integers are stored as floats) of finite numbers."""
    import torch

    expected = (len(example.images), len(example.texts))
    if not isinstance(matrix, torch.Tensor):
        raise VlbenchError(f"matcher '{matcher.name}' returned a {type(matrix).__name__} of scores for example '{example.id}'; return a torch.Tensor [n_images, n_texts] = {list(expected)}")
    if tuple(matrix.shape) != expected:
        raise VlbenchError(
            f"matcher '{matcher.name}' returned scores of shape {tuple(matrix.shape)} for example "
            f"'{example.id}'; expected [n_images, n_texts] = {list(expected)}"
        )
    scores = (matrix if matrix.is_floating_point() else matrix.double()).tolist()  # floats exactly, as computed
    if not all(math.isfinite(value) for row in scores for value in row):
        raise VlbenchError(f"matcher '{matcher.name}' returned a NaN or infinite score for example '{example.id}': {scores}")
    return ScoredExample(example.id, scores, [list(pair) for pair in example.positives], dict(example.tags))
