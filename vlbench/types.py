"""The contracts: examples, tasks and matchers.

A task yields `Example`s; a matcher turns an example's images and texts into a score matrix
`[n_images, n_texts]` (higher = better match); the task turns score matrices into metrics.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from vlbench.errors import VlbenchError

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image as PILImage

    from vlbench.runtime import Runtime
    from vlbench.training import TrainConfig


@dataclass(frozen=True)
class ImageRef:
    """A lazily loaded image. `key` names its content within the task (an image id, plus the crop).

    Exactly one of `path` (a file on disk) or `render` (a picklable function returning a PIL
    image) is set. `crop` is a (left, top, right, bottom) box in pixels, clamped to the image.
    `picture` is the key of the whole picture a crop is cut from (none: `key`): the few-shot split
    keeps pictures apart, so two crops of one photograph never land on both sides.
    """

    key: str
    path: Path | None = None
    render: Callable[[], PILImage] | None = field(default=None, compare=False)
    crop: tuple[float, float, float, float] | None = None
    picture: str | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.render is None):
            raise ValueError(f"image '{self.key}': give exactly one of path and render")

    def load(self, data: bytes | None = None) -> PILImage:
        """The image as RGB, decoded from `data` (the file's bytes, when already read) or from the
        file; a missing or unreadable file raises `VlbenchError` naming it. Pillow's `convert("RGB")`
        drops transparency, keeping the colours under it, as the DSD release's, diffusion-itm's and
        ComCLIP's loaders do (Winoground has RGBA images), so the pixels are the ones their numbers saw."""
        image = self.render() if self.render is not None else self._open(data if data is not None else self.read_bytes())
        image = image.convert("RGB")
        if self.crop is not None:
            left, top, right, bottom = self.crop
            width, height = image.size
            image = image.crop((max(0, round(left)), max(0, round(top)), min(width, round(right)), min(height, round(bottom))))
        return image

    def read_bytes(self) -> bytes:
        """The file's bytes; a missing or unreadable file raises `VlbenchError` naming it."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            raise VlbenchError(f"image '{self.key}' not found at {self.path}") from None
        except OSError as error:
            raise VlbenchError(f"image '{self.key}' at {self.path} cannot be read: {error}") from None

    def _open(self, data: bytes) -> PILImage:
        """The image decoded from the file's bytes `data`."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                return image
        except UnidentifiedImageError:
            raise VlbenchError(f"image '{self.key}' at {self.path} cannot be read: Pillow does not recognise it as an image") from None
        except OSError as error:
            raise VlbenchError(f"image '{self.key}' at {self.path} cannot be read: {error}") from None


class LoadedImage:
    """An image handed to a matcher: its `key` (for caches and seeding) and its RGB `pixels`.
    Examples that show the same image may be handed the same object: read the pixels, never
    change them in place.

    Made from an `ImageRef` (`LoadedImage.of`), the pixels are decoded on first use, so a matcher
    whose features of the image are cached never decodes it: `content_key` stands for the pixels
    without decoding them where the file's sha256 is known (`hashing.known_sha256`)."""

    def __init__(self, key: str, pixels: PILImage | None = None) -> None:
        self.key = key
        self.source: ImageRef | None = None
        self._pixels = pixels
        self._on_decode: Callable[[int], None] | None = None
        self._file_sha256: str | None = None  # of the bytes the pixels were decoded from
        self._content_key: str | None = None
        self._lock = threading.Lock()  # the key and the decoding agree on one version of the file

    @classmethod
    def of(cls, ref: ImageRef, on_decode: Callable[[int], None] | None = None) -> LoadedImage:
        """The image `ref` names, decoded on first use (then `on_decode(bytes of pixels)`)."""
        image = cls(ref.key)
        image.source, image._on_decode = ref, on_decode
        return image

    @property
    def pixels(self) -> PILImage:
        with self._lock:
            decoded = self._decode_once()
        self._report(decoded)
        return self._pixels

    @cached_property
    def content_hash(self) -> str:
        """A hash of the decoded pixels (mode, size, bytes): the key of on-disk feature caches."""
        digest = hashlib.blake2b(f"{self.pixels.mode}:{self.pixels.size}:".encode(), digest_size=16)
        digest.update(self.pixels.tobytes())
        return digest.hexdigest()

    @property
    def content_key(self) -> str:
        """A key that stands for the pixels as `content_hash` does (the same key, the same pixels):
        for an image file, a hash of its bytes' sha256, its crop and the decoders
        (`decoder_identity`), found without reading the file where `hashing.known_sha256` knows
        it, else by reading it (never decoding it); for a rendered image, the pixel hash."""
        from vlbench.hashing import known_sha256

        ref = self.source
        if ref is None or ref.path is None:
            return self.content_hash
        with self._lock:
            if self._content_key is None:
                digest = self._file_sha256 or known_sha256(ref.path) or hashlib.sha256(ref.read_bytes()).hexdigest()
                self._content_key = _file_key(digest, ref.crop)
        return self._content_key

    def _decode_once(self) -> bool:
        """Decode, if not done yet (under `_lock`); whether it decoded now."""
        if self._pixels is not None or self.source is None:
            return False
        ref = self.source
        if ref.path is None:
            self._pixels = ref.load()
            return True
        data = ref.read_bytes()
        self._file_sha256 = hashlib.sha256(data).hexdigest()
        if self._content_key is not None and self._content_key != _file_key(self._file_sha256, ref.crop):
            raise VlbenchError(f"image '{self.key}' at {ref.path} changed on disk while this run used it")
        self._pixels = ref.load(data)
        return True

    def _report(self, decoded: bool) -> None:
        if decoded and self._on_decode is not None:
            width, height = self._pixels.size
            self._on_decode(width * height * 4)  # PIL keeps an RGB pixel in 4 bytes

    def __getstate__(self) -> dict[str, Any]:
        return {**vars(self), "_lock": None, "_on_decode": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state, _lock=threading.Lock())


FILE_KEY_VERSION = 2  # bump when the pixels an ImageRef decodes from the same bytes change (RGB conversion, cropping); 2: transparency dropped, not composited on white


@cache
def decoder_identity() -> str:
    """What turns an image file's bytes into pixels besides vlbench: Pillow and its codecs'
    versions, and whether it loads truncated files."""
    from PIL import features

    codecs = {codec: features.version(codec) for codec in ("jpg", "libjpeg_turbo", "jpg_2000", "zlib", "zlib_ng", "libtiff", "webp", "avif")}  # None where absent
    return json.dumps({"vlbench": FILE_KEY_VERSION, "pillow": features.version("pil"), **codecs}, sort_keys=True)


def _file_key(sha256: str, crop: tuple[float, float, float, float] | None) -> str:
    from PIL import ImageFile

    truncated = ", truncated files loaded" if ImageFile.LOAD_TRUNCATED_IMAGES else ""  # a process-wide switch
    return hashlib.blake2b(f"{decoder_identity()}{truncated}:{sha256}:{list(crop) if crop else None}".encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class Example:
    """One benchmark item.

    `positives` lists the (image index, text index) pairs that match; every other pair is a
    negative. `tags` feed the per-tag breakdowns (e.g. ``{"neg_value": "subject"}``).
    """

    id: str
    images: tuple[ImageRef, ...]
    texts: tuple[str, ...]
    positives: tuple[tuple[int, int], ...]
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def image_keys(self) -> tuple[str, ...]:
        return tuple(image.key for image in self.images)

    @property
    def picture_keys(self) -> tuple[str, ...]:
        """The pictures its images show (a crop's whole picture): what the few-shot split keeps apart."""
        return tuple(image.picture or image.key for image in self.images)

    @property
    def n_pairs(self) -> int:
        return len(self.images) * len(self.texts)


@dataclass
class NoOptions:
    """Options of a component that has none."""


class Task:
    """A benchmark: its examples, where few-shot examples come from, and its metrics.

    Subclasses set `name` and `summary`, define `Options` (a dataclass; YAML fills it, its
    `__post_init__` may check ranges with `vlbench.options.check`) and implement `examples`,
    `outcomes` and `describe`. `headline` names the metric boards lead with and compare on (default:
    the first one `outcomes` returns); a headline `summarize` derives as the equal-weight mean over
    one tag's groups of the per-example outcome names that tag as `headline_groups` (ComVG's
    `average` over `neg_value`), so paired comparisons test the headline itself; `version` is bumped when a change to the code changes what
    the examples or metrics are (stored runs then refuse to resume). `release_cut` says that the
    released DSD code cut this task's evaluation pool positionally into training and evaluation
    rows, so `--split paper-release` may reproduce it. `reads_data_root` is False for a task that
    makes its own data: a data root given for its run is refused, not recorded as if read.
    `examples_vary_by_seed` is False for a task whose `examples` ignore the seed: boards then check
    that every seed of every run on its data evaluated the same examples (a property where the
    options decide: VQAv2's csv is read as it is, its official negatives are drawn per seed). A task whose examples do
    vary should name the files it draws them from (`source_files`; none by default, and then an
    edit between two seeds' runs goes unseen).
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    summary: ClassVar[str] = ""
    headline: ClassVar[str | None] = None
    headline_groups: ClassVar[str | None] = None
    release_cut: ClassVar[bool] = False
    reads_data_root: ClassVar[bool] = True
    examples_vary_by_seed: ClassVar[bool] = True
    Options: ClassVar[type] = NoOptions

    def __init__(self, options: Any, data_root: Path | None) -> None:
        self.options = options
        self.data_root = data_root

    def examples(self, seed: int) -> list[Example]:
        """The evaluation pool, in a fixed order. `seed` is the run's seed, for tasks that draw
        candidates (negatives); others ignore it."""
        raise NotImplementedError

    def require_data_root(self) -> Path:
        """The data root, or a `VlbenchError` saying how to give one and what it must hold."""
        if self.data_root is None:
            raise VlbenchError(
                f"task '{self.name}' needs its data: pass --data-root DIR, set VLBENCH_DATA, or set "
                f"data_root in --config (in a suite: the task entry's data_root, under --data-dir). Expected layout: {self.describe()}"
            )
        if self.data_root.is_file():
            raise VlbenchError(f"task '{self.name}': data root {self.data_root}{self._root_source()} is a file; pass the directory that holds the data. Expected layout: {self.describe()}")
        if not self.data_root.is_dir():
            raise VlbenchError(f"task '{self.name}': data root {self.data_root}{self._root_source()} does not exist. Expected layout: {self.describe()}")
        return self.data_root

    def data_file(self, relative: str | Path) -> Path:
        """`relative` under the data root; a missing file is an error that shows the layout."""
        path = self.require_data_root() / relative
        if not path.exists():
            raise VlbenchError(f"task '{self.name}': {path} not found{self._root_source()}. Expected layout: {self.describe()}")
        return path

    def _root_source(self) -> str:
        """Where the data root came from, for errors, when the environment set it (it overrides a
        config file's `data_root` and is easy to forget)."""
        import os

        from_environment = os.environ.get("VLBENCH_DATA")
        return " (from VLBENCH_DATA, which --data-root overrides and which overrides data_root in --config)" if from_environment and Path(from_environment) == self.data_root else ""

    def train_pool(self, seed: int) -> list[Example] | None:
        """The official train split, or None: few-shot examples are then split off `examples(seed)`
        grouped by picture, so no evaluation image (nor a crop of it) is seen in training."""
        return None

    def outcomes(self, scores: Sequence[Sequence[float]], positives: Sequence[Sequence[int]]) -> dict[str, float]:
        """Per-example metric values (e.g. ``{"accuracy": 1.0}``) from its score matrix and its
        matching (image, text) pairs. Only these two inputs, so stored records suffice."""
        raise NotImplementedError

    def summarize(self, metrics: dict[str, Any]) -> dict[str, float]:
        """Metrics derived from the aggregated ones (e.g. an average over tags); none by default."""
        return {}

    def headline_metric(self, metrics: dict[str, float]) -> str:
        """The metric boards lead with: `headline`, else the first of `metrics`."""
        return self.headline if self.headline in metrics else next(iter(metrics))

    def data_fingerprint(self, examples: Sequence[Example]) -> str:
        """What identifies the data a run reads (part of its identity): by default a hash of the
        examples' ids, texts, matching pairs, tags, image keys and image files' bytes. A task whose
        pixels live somewhere the examples do not name (e.g. packed in parquet files) adds it."""
        from vlbench.identity import examples_fingerprint

        return examples_fingerprint(examples)

    def source_files(self, pool: Sequence[Example], train_pool: Sequence[Example] | None) -> list[Path]:
        """For a task whose examples vary by seed: the files a run's evaluation pool and train pool
        (None at zero shots) were drawn from, none of them chosen by the seed (RefCOCOg's refs file
        and the pools' images). Their bytes are the run's `source_fingerprint`, which the seeds of
        one configuration must share to be averaged: a data edit between two seeds' runs is then
        refused, where the seed-drawn data fingerprints cannot show it. Default: none."""
        return []

    def statistics(self, examples: list[Example]) -> dict[str, Any]:
        """Task-specific counts that `vlbench data check` reports (e.g. known shortcuts)."""
        return {}

    def describe(self) -> str:
        """The data layout this task reads, for error messages and `vlbench data check`."""
        return self.summary


class Matcher:
    """Scores how well images match texts.

    Subclasses set `name` and `summary`, define `Options` (a dataclass) and implement `score`.
    Trainable matchers set `trainable = True` and keep every tensor they train in one
    `torch.nn.Module`, `self.trained` (or return it from `trained_module`); the parameters the
    loop optimises and the state stored in the run record derive from it, and the default `fit`
    runs the protocol's shared training loop over `score`.

    Class attributes: `uses_model` (takes `--model`), `default_model` (the model of a run that
    names none, recorded as if named: one configuration either way), `train_defaults` (this matcher's `train:`
    defaults), `records_attention` (can keep attention maps for the report), `version` (bump it
    when a change to the code changes scores: stored runs then refuse to resume),
    `scoring_rounds_in_fit` (for the compute estimate, with `unet_passes` and `training_rounds`),
    `hashes_pixels` (reads `LoadedImage.content_hash`: the loading threads then compute it ahead
    of scoring; a matcher that reads it without saying so computes it on the scoring thread).
    `prepare_images` says what else the loading threads do ahead of scoring.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    summary: ClassVar[str] = ""
    trainable: ClassVar[bool] = False
    uses_model: ClassVar[bool] = False
    default_model: ClassVar[str | None] = None
    train_defaults: ClassVar[dict[str, Any]] = {}
    records_attention: ClassVar[bool] = False
    hashes_pixels: ClassVar[bool] = False
    scoring_rounds_in_fit: ClassVar[int] = 0  # times `fit` scores each training example outside its gradient steps
    Options: ClassVar[type] = NoOptions

    def __init__(self, options: Any, runtime: Runtime) -> None:
        self.options = options
        self.runtime = runtime

    def prepare_images(self, images: Sequence[LoadedImage]) -> None:
        """Runs in the image loading threads on each example's images before the example is
        scored: decodes them (and hashes their pixels if `hashes_pixels`). A matcher that needs
        no pixels of some images (their features are cached under `LoadedImage.content_key`)
        may leave those undecoded; a file that cannot be read then fails when it is decoded."""
        for image in images:
            image.pixels  # noqa: B018 - decoded here, in parallel, rather than on the scoring thread
            if self.hashes_pixels:
                image.content_hash  # noqa: B018 - likewise

    @classmethod
    def missing_model(cls, model: str | None) -> str | None:
        """Why `model` is not on this machine and what to download, or None if it is. Reads no
        weights and never uses the network (`vlbench suite plan`); by default nothing is checked."""
        return None

    @classmethod
    def unet_passes(cls, options: Any, examples: Sequence[Example], training: bool) -> int:
        """UNet passes (one per noised latent) that scoring `examples` once takes, in training or
        in evaluation; `vlbench suite plan` adds them up into its compute estimate. 0 by default
        (no UNet)."""
        return 0

    @classmethod
    def unet_passes_keeping_attention(cls, options: Any, examples: Sequence[Example]) -> int:
        """UNet passes of scoring `examples` in evaluation with `runtime.save_attention` (maps are
        kept of evaluated examples only); as `unet_passes` by default (override where keeping the
        maps changes the work)."""
        return cls.unet_passes(options, examples, False)

    @classmethod
    def training_rounds(cls, train: TrainConfig) -> int:
        """How many times `fit` scores each training example with a backward pass: once per epoch
        by default (the shared training loop)."""
        return train.epochs

    def score(self, images: Sequence[LoadedImage], texts: Sequence[str]) -> torch.Tensor:
        """Score matrix `[len(images), len(texts)]`. A pair's score must not depend on the other
        images or texts passed with it."""
        raise NotImplementedError

    def score_examples(self, batch: Sequence[tuple[Sequence[LoadedImage], Sequence[str]]]) -> list[torch.Tensor]:
        """Score several examples at once; override to batch across examples (the same results
        up to float rounding, within the conformance kit's 1e-5)."""
        return [self.score(images, texts) for images, texts in batch]

    def trained_module(self) -> torch.nn.Module:
        """The module holding every tensor `fit` trains (trainable matchers): `self.trained`."""
        trained = getattr(self, "trained", None)
        if not self.trainable or trained is None:
            raise NotImplementedError(f"matcher '{self.name}' has no trained module (a trainable matcher sets self.trained)")
        return trained

    def trainable_parameters(self) -> list[torch.Tensor]:
        """The tensors `fit` optimises: the trained module's parameters that require gradients."""
        return [parameter for parameter in self.trained_module().parameters() if parameter.requires_grad]

    def fit(self, examples: Sequence[Example], train: TrainConfig, load_images: Callable) -> None:
        """Train on few-shot `examples` with the protocol's loss (trainable matchers only)."""
        from vlbench.training import fit_by_scores

        fit_by_scores(self, examples, train, load_images)

    def training_generators(self) -> list[torch.Generator]:
        """The random generators `fit` draws from besides torch's global one, kept in training
        checkpoints so that a resumed training draws what an uninterrupted one would; none by default."""
        return []

    def state_dict(self) -> dict[str, Any]:
        """Trained state to store in the run record (CPU tensors); empty for matchers that do not train."""
        if not self.trainable:
            return {}
        return {name: tensor.detach().to("cpu", copy=True) for name, tensor in self.trained_module().state_dict().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load a state that `state_dict` returned."""
        if not self.trainable:
            if state:
                raise VlbenchError(f"matcher '{self.name}' has no trained state to load")
            return
        self.trained_module().load_state_dict(state)

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this matcher's scores: name, `--model`, options and `model_fingerprint()`."""
        from vlbench.options import as_dict

        return {"name": self.name, "model": self.runtime.model, "options": as_dict(self.options), **self.model_fingerprint()}

    def model_fingerprint(self) -> dict[str, Any]:
        """What identifies the weights `--model` names (a resume with other weights is refused):
        by default, where `--model` is a local file or folder, `weights_sha256` over its files
        (hidden ones aside); nothing for a name that is not a path. A matcher that resolves model
        names itself (a hub id) returns its own `weights_sha256` (and `model`, the resolved name)."""
        from vlbench.hashing import files_sha256

        if not self.uses_model or self.runtime.model is None:
            return {}
        path = Path(self.runtime.model).expanduser()
        if path.is_file():
            return {"weights_sha256": files_sha256([path], path.parent)}
        if path.is_dir():
            files = [file for file in path.rglob("*") if file.is_file() and not any(part.startswith(".") for part in file.relative_to(path).parts)]
            return {"weights_sha256": files_sha256(files, path)}
        return {}

    def take_attention(self) -> list[dict[str, Any]]:
        """With `runtime.save_attention` (matchers with `records_attention`): after `score_examples`,
        per example of that batch, the maps its scores came from (format: `vlbench.example_records`)."""
        raise NotImplementedError(f"matcher '{self.name}' records no attention maps")

    def work_done(self) -> dict[str, int]:
        """Counts of the costly calls this matcher has made (e.g. UNet passes), summed over ranks
        into `results.json`'s `timings.work`; none by default."""
        return {}

    def library_versions(self) -> list[str]:
        """Distributions the scores depend on beyond torch, numpy and Pillow: their versions are
        part of a run's identity (a resume under others is refused) and listed per session."""
        return []
