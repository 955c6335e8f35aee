"""`refcocog`: RefCOCOg referring expressions as text retrieval over 10 candidates.

One example = one referring sentence's image against 10 texts: the sentence and 9 negatives,
drawn with the run's seed from the sentences of refs on *other* images of the same split (no
negative equals the positive). `view=whole` scores the whole image, as the DSD release does;
`view=crop` scores the referred box, padded by `crop_padding` of its size on each side. Texts are
each sentence's `raw` field, as written and as the DSD release reads it (`text: sent` takes the refer
toolkit's lowercased form without punctuation). The
dataset's own split field decides training (`train`) and evaluation (`eval_split`); with Google's
split (`refs(google).p`) train and val share images, so the few-shot split drops the evaluation
examples whose image a drawn training example shows (with `view=crop`, whose photograph: a crop
of another object on it counts). `eval_split: all` takes every ref of every
split and no train pool, as the DSD release does; few-shot examples are then split off by image,
or with `--split paper-release` taken from the first rows (the release's cut).

The refs file is a Python pickle, as published: only load files from a source you trust.
Metrics: top-1 and top-5.
"""

from __future__ import annotations

import pickle
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vlbench.errors import VlbenchError
from vlbench.identity import image_files
from vlbench.metrics import text_top_k
from vlbench.options import check, finite
from vlbench.readers import read_json, require_keys
from vlbench.types import Example, ImageRef, Task

N_CANDIDATES = 10
REFCOCOG_REFS = {"refs(umd).p", "refs(google).p"}  # RefCOCOg's two splits; refs(unc).p is RefCOCO's and RefCOCO+'s
REFER_IMAGES = "images/mscoco/images/train2014"  # beside refcocog/ in the refer toolkit's data folder
ALL_SPLITS = "all"
REF_FIELDS = ("ref_id", "ann_id", "image_id", "split", "sentences")


@dataclass
class RefCOCOgOptions:
    refs: str = "refs(umd).p"
    instances: str = "instances.json"
    images: str = "images/train2014"
    eval_split: str = "val"
    view: Literal["whole", "crop"] = "whole"
    crop_padding: float = 0.1
    text: Literal["raw", "sent"] = "raw"  # the sentence as written (as the DSD release reads it), or the refer toolkit's lowercased, punctuation-free form

    def __post_init__(self) -> None:
        check(self.eval_split != "train", "eval_split", "'train' is the few-shot train pool; choose 'val', 'test' or 'all'")
        check(finite(self.crop_padding) and self.crop_padding >= 0, "crop_padding", f"must be a number >= 0, got {self.crop_padding}")


class RefCOCOgTask(Task):
    name = "refcocog"
    version = "4"  # 2: no negative is a sentence of a ref on the positive's image; 3: the `text` option, `raw` by default (was `sent`); 4: crops of one photograph on one side of the split
    summary = "RefCOCOg: rank a referring expression for its image among 10 (9 from other images)."
    release_cut = True
    Options = RefCOCOgOptions

    def examples(self, seed: int) -> list[Example]:
        return self._split(self.options.eval_split, seed)

    def train_pool(self, seed: int) -> list[Example] | None:
        return None if self.options.eval_split == ALL_SPLITS else self._split("train", seed)

    def source_files(self, pool, train_pool) -> list[Path]:
        boxes = (self.options.instances,) if self.options.view == "crop" else ()
        return [*(self.data_file(name) for name in (self.options.refs, *boxes)), *image_files([*pool, *(train_pool or [])])]

    def outcomes(self, scores, positives) -> dict[str, float]:
        (image, text), = positives
        return text_top_k(scores, image, text, ks=(1, 5))

    def describe(self) -> str:
        return (
            f"<root>/{self.options.refs} (pickled list of refs: ref_id, ann_id, image_id, split, sentences), "
            f"<root>/{self.options.instances} (COCO detection json with bboxes) and images "
            f"<root>/{self.options.images}/COCO_train2014_<12-digit image id>.jpg. The refs and instances "
            "come from the refer toolkit's refcocog download (lichengunc/refer); images are COCO train2014."
        )

    def _split(self, split: str, seed: int) -> list[Example]:
        every = self._refs()
        refs = [ref for ref in every if split in (ALL_SPLITS, ref["split"])]
        if not refs:
            splits = sorted({str(ref["split"]) for ref in every})
            raise VlbenchError(f"task 'refcocog': {self.options.refs} has no refs of split '{split}'; its splits: {', '.join(splits)} (or '{ALL_SPLITS}' for every ref)")
        boxes = self._boxes() if self.options.view == "crop" else {}
        field = self.options.text
        # (image, the normalised sentence that tells sentences apart, the text shown): "The man on
        # the left." and "the man on the left" are one sentence, never a negative of the other
        sentences = [(ref["image_id"], sentence["sent"], sentence[field]) for ref in refs for sentence in ref["sentences"]]
        said_of: dict[int, set[str]] = {}  # what the refs on each image say
        for image_id, said, _ in sentences:
            said_of.setdefault(image_id, set()).add(said)
        images = self._image_folder()
        examples = []
        for ref in refs:
            path = images / f"COCO_train2014_{ref['image_id']:012d}.jpg"
            if self.options.view == "crop":
                image = ImageRef(f"{ref['image_id']}@{ref['ann_id']}", path, crop=self._padded(boxes, ref), picture=str(ref["image_id"]))
            else:
                image = ImageRef(str(ref["image_id"]), path)
            for sentence in ref["sentences"]:
                negatives = _negatives(sentences, said_of[ref["image_id"]], ref["image_id"], random.Random(f"refcocog-negatives:{seed}:{sentence['sent_id']}"))
                texts = (sentence[field], *negatives)
                examples.append(Example(f"refcocog-{sentence['sent_id']}", (image,), texts, ((0, 0),), {}))
        return examples

    def _image_folder(self) -> Path:
        """`images` under the data root; missing where the refer toolkit keeps them (beside the
        data root), an error that names the option to read them there."""
        root = self.require_data_root()
        images, toolkit = root / self.options.images, root.parent / REFER_IMAGES
        if not images.is_dir() and toolkit.is_dir():
            raise VlbenchError(f"task 'refcocog': image folder {images} not found. The refer toolkit keeps them at {toolkit}: set `task_options: {{images: ../{REFER_IMAGES}}}` in the run's --config")
        return images

    def _refs(self) -> list[dict[str, Any]]:
        root = self.require_data_root()
        others = sorted(path.name for path in root.glob("refs(*).p") if path.name != self.options.refs)
        if others and not (root / self.options.refs).exists():
            refcocog = sorted(REFCOCOG_REFS.intersection(others))
            if refcocog:
                other = refcocog[0]
                raise VlbenchError(f"task 'refcocog': {root / self.options.refs} not found, but {other} is there: to use it, set `task_options: {{refs: {other}}}` in the run's --config (or the suite's task entry)")
            raise VlbenchError(f"task 'refcocog': {root / self.options.refs} not found; {', '.join(others)} here are the splits of RefCOCO or RefCOCO+ (the refer toolkit's refcoco and refcoco+ folders), not RefCOCOg's: point the data root at its refcocog folder")
        path = self.data_file(self.options.refs)
        try:
            with open(path, "rb") as handle:
                refs = pickle.load(handle)
        except (pickle.UnpicklingError, EOFError) as error:
            raise VlbenchError(f"{path}: not a readable refs pickle ({error})") from None
        except UnicodeDecodeError as error:  # a Python 2 pickle whose byte strings are not ASCII
            raise VlbenchError(f"{path}: a Python 2 pickle with non-ASCII byte strings ({error}); re-save it from Python 3 with the text decoded as it was written (e.g. UTF-8)") from None
        if not isinstance(refs, list):
            raise VlbenchError(f"{path}: expected a pickled list of refs, got {type(refs).__name__}")
        for index, ref in enumerate(refs):
            require_keys(ref, REF_FIELDS, f"{path}, ref {index}")
            for sentence in ref["sentences"]:
                require_keys(sentence, ("sent_id", "sent", self.options.text), f"{path}, ref {index}, a sentence")
        return refs

    def _boxes(self) -> dict[int, list[float]]:
        path = self.data_file(self.options.instances)
        document = read_json(path)
        if not isinstance(document, dict) or "annotations" not in document:
            raise VlbenchError(f"{path}: expected COCO detection json with an 'annotations' list")
        return {annotation["id"]: annotation["bbox"] for annotation in document["annotations"]}

    def _padded(self, boxes: dict[int, list[float]], ref: dict[str, Any]) -> tuple[float, float, float, float]:
        if ref["ann_id"] not in boxes:
            raise VlbenchError(f"{self.options.instances}: no annotation {ref['ann_id']} for ref {ref['ref_id']}")
        x, y, width, height = boxes[ref["ann_id"]]
        pad_x, pad_y = width * self.options.crop_padding, height * self.options.crop_padding
        return (x - pad_x, y - pad_y, x + width + pad_x, y + height + pad_y)


def _negatives(sentences: list[tuple[int, str, str]], said: set[str], image_id: int, rng: random.Random) -> list[str]:
    """9 distinct sentences of refs on other images, none of them `said` of this image by any of its
    refs (such a sentence, drawn from another image, would describe this one truly: a correct
    choice counted wrong); sentences are told apart by their normalised form."""
    negatives: list[str] = []
    drawn: set[str] = set()
    for _ in range(1000 * N_CANDIDATES):
        owner, normalised, text = rng.choice(sentences)
        if owner != image_id and normalised not in said and normalised not in drawn:
            negatives.append(text)
            drawn.add(normalised)
            if len(negatives) == N_CANDIDATES - 1:
                return negatives
    raise VlbenchError(f"refcocog: too few distinct sentences on images other than {image_id} to draw 9 negatives")
