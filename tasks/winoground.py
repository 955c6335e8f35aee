"""`winoground`: two images and two captions with the same words in a different order.

Reads the Hugging Face layout (`facebook/winoground`: parquet files with `id, image_0, image_1,
caption_0, caption_1, tag, secondary_tag, num_main_preds, collapsed_tag`, images embedded) or the
older one (`data/examples.jsonl` plus `data/images/<name>.png`). RGBA images lose their alpha
(`ImageRef.load`), as in diffusion-itm's and ComCLIP's Winoground loaders. Metrics (strict `>`): text score (each image prefers its own caption), image score (each
caption prefers its own image) and group score (both), overall and per `collapsed_tag`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Literal

from vlbench.errors import VlbenchError
from vlbench.metrics import winoground_outcomes
from vlbench.readers import read_jsonl, require_keys
from vlbench.types import Example, ImageRef, Task

FIELDS = ("id", "image_0", "image_1", "caption_0", "caption_1", "collapsed_tag")


@dataclass
class WinogroundOptions:
    layout: Literal["auto", "parquet", "jsonl"] = "auto"


class WinogroundTask(Task):
    name = "winoground"
    examples_vary_by_seed = False
    version = "1"
    summary = "Winoground: match 2 images to 2 captions with the same words reordered (text/image/group)."
    headline = "group"
    Options = WinogroundOptions

    def examples(self, seed: int) -> list[Example]:
        root = self.require_data_root()
        layout = self._layout()
        parquet_files = sorted(root.rglob("*.parquet"))
        if layout == "parquet":
            if not parquet_files:
                raise VlbenchError(f"task 'winoground': no .parquet file under {root}. Expected layout: {self.describe()}")
            return _from_parquet_files(parquet_files)
        saved = sorted(root.rglob("*.arrow"))
        if saved and not (root / "data" / "examples.jsonl").exists():
            raise VlbenchError(
                f"task 'winoground': {root} holds a `datasets` save_to_disk copy ({saved[0].name}), which vlbench does not read; write it as parquet: "
                f"datasets.load_from_disk('{saved[0].parent}').to_parquet('{root}/winoground.parquet') (any parquet file under the data root is read)"
            )
        jsonl = self.data_file("data/examples.jsonl")
        images = root / "data" / "images"
        if not images.is_dir() and (root / "data" / "images.zip").exists():
            raise VlbenchError(f"task 'winoground': {images} not found, but {root / 'data' / 'images.zip'} is there: unzip it into {root / 'data'} (the hub ships the images zipped)")
        examples = []
        for index, record in enumerate(read_jsonl(jsonl)):
            require_keys(record, FIELDS, f"{jsonl}, record {index + 1}")
            refs = tuple(ImageRef(record[f"image_{i}"], images / f"{record[f'image_{i}']}.png") for i in (0, 1))
            examples.append(_example(record, refs))
        return examples

    def data_fingerprint(self, examples) -> str:
        """The examples' fingerprint, plus the content hash of each parquet file (the pixels are
        in them, where the examples do not name them)."""
        from vlbench.hashing import file_sha256
        from vlbench.identity import examples_fingerprint

        root = self.require_data_root()
        parquet = sorted(root.rglob("*.parquet")) if self._layout() == "parquet" else []
        return examples_fingerprint(examples) + "".join(f":{file_sha256(path)}" for path in parquet)

    def outcomes(self, scores, positives) -> dict[str, float]:
        if sorted(map(tuple, positives)) != [(0, 0), (1, 1)]:
            raise VlbenchError(f"winoground scores need matching pairs (0,0) and (1,1), got {positives}")
        return winoground_outcomes(scores)

    def _layout(self) -> str:
        if self.options.layout != "auto":
            return self.options.layout
        return "parquet" if any(self.require_data_root().rglob("*.parquet")) else "jsonl"

    def describe(self) -> str:
        return (
            "either the Hugging Face dataset facebook/winoground (gated: accept its licence on the hub, then "
            "download it) as <root>/**/*.parquet with columns " + ", ".join(FIELDS) + ", or the older "
            "<root>/data/examples.jsonl with images <root>/data/images/<image name>.png"
        )


def _example(record: dict[str, Any], refs: tuple[ImageRef, ImageRef]) -> Example:
    tags = {"collapsed_tag": str(record["collapsed_tag"])}
    return Example(f"winoground-{record['id']}", refs, (record["caption_0"], record["caption_1"]), ((0, 0), (1, 1)), tags)


def _from_parquet_files(paths: list[Path]) -> list[Example]:
    """The examples of every parquet file; an id in two files (two downloads of the dataset under
    one root, e.g. two snapshots of a hub cache) is refused naming both."""
    examples, source = [], {}
    for path in paths:
        for example in _parquet_examples(path):
            if example.id in source:
                raise VlbenchError(f"task 'winoground': example '{example.id}' is in both {source[example.id]} and {path}: two copies of the dataset under one data root; point --data-root at one of them")
            source[example.id] = path
            examples.append(example)
    return examples


def _parquet_examples(path: Path) -> list[Example]:
    parquet = _parquet_module()
    table = parquet.read_table(path, columns=[name for name in FIELDS if not name.startswith("image_")])
    missing = [name for name in FIELDS if name not in parquet.read_schema(path).names]
    if missing:
        raise VlbenchError(f"{path}: missing column(s) {', '.join(missing)}")
    metadata = parquet.ParquetFile(path).metadata
    starts = [0]
    for group in range(metadata.num_row_groups):
        starts.append(starts[-1] + metadata.row_group(group).num_rows)
    examples = []
    for row, record in enumerate(table.to_pylist()):
        group = max(g for g in range(metadata.num_row_groups) if starts[g] <= row)
        refs = tuple(
            ImageRef(f"{record['id']}:image_{i}", render=partial(_parquet_image, str(path), group, row - starts[group], f"image_{i}"))
            for i in (0, 1)
        )
        examples.append(_example(record, refs))
    return examples


def _parquet_image(path: str, group: int, offset: int, column: str):
    from PIL import Image

    cell = _row_group_column(path, group, column)[offset]
    data = cell["bytes"] if isinstance(cell, dict) else cell
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except OSError as error:
        raise VlbenchError(f"{path}: {column} of row {offset} in row group {group} cannot be read: {error}") from None
    return image


@lru_cache(maxsize=4)
def _row_group_column(path: str, group: int, column: str) -> list[Any]:
    """One row group's image column; cached so consecutive examples do not re-read it."""
    return _parquet_module().ParquetFile(path).read_row_group(group, columns=[column]).column(0).to_pylist()


def _parquet_module():
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise VlbenchError("reading Winoground's parquet layout needs pyarrow: pip install 'vlbench[winoground]'") from None
    return parquet
