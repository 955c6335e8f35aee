"""`comvg`: Compositional Visual Genome (ComCLIP; as released with DSD).

One example = one sentence and two Visual Genome images: the positive, and a negative whose
scene differs in the subject, the object or the predicate (`neg_value`: subject, object, verb;
the paper calls verb "predicate"). Metrics: accuracy overall (over all examples), per
`neg_value`, and `average`, the mean of the per-`neg_value` accuracies. The paper's "average"
column matches neither exactly (CLIP fine-tuning: 80.77 / 82.49 / 60.50 gives 74.59 as a mean and
76.79 over all examples, against 76.10 reported), so both are reported.

`train_file` names a training csv (the release's `comvg_train.csv`: `sentence, pos_image_id,
neg_image_id`, images under `train_images`); few-shot examples are then drawn from it and the
whole test file is evaluated, as in the paper. Without it, few-shot examples are split off the
test file by image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vlbench.errors import VlbenchError
from vlbench.metrics import image_choice_correct
from vlbench.readers import read_csv
from vlbench.types import Example, ImageRef, Task

COLUMNS = ("id", "sentence", "pos_triplet", "neg_triplet", "pos_image_id", "neg_image_id", "neg_value")
TRAIN_COLUMNS = ("sentence", "pos_image_id", "neg_image_id")
NEG_VALUES = ("subject", "object", "verb")
COMCLIP_CSV = "ComVG.csv"  # the same file as ComCLIP names it


@dataclass
class ComVGOptions:
    csv: str = "compositional_visual_genome.csv"
    images: str = "vg_concept"
    neg_value: Literal["subject", "object", "verb"] | None = None  # keep only one kind of negative
    train_file: str | None = None  # a training csv (the release's comvg_train.csv); None: split the test file
    train_images: str = "VG_100K"


class ComVGTask(Task):
    name = "comvg"
    examples_vary_by_seed = False
    version = "1"
    summary = "ComVG: pick the image matching a sentence against one differing in subject, object or predicate."
    headline = "average"
    headline_groups = "neg_value"
    Options = ComVGOptions

    def examples(self, seed: int) -> list[Example]:
        root = self.require_data_root()
        if not (root / self.options.csv).exists() and (root / COMCLIP_CSV).exists():
            raise VlbenchError(f"task 'comvg': {root / self.options.csv} not found, but {COMCLIP_CSV} (ComCLIP's name for the same file) is there: set `task_options: {{csv: {COMCLIP_CSV}}}` in the run's --config")
        path = self.data_file(self.options.csv)
        images = self.require_data_root() / self.options.images
        examples = []
        for line, row in enumerate(read_csv(path, COLUMNS), start=2):
            if row["neg_value"] not in NEG_VALUES:
                raise VlbenchError(f"{path}, line {line}: neg_value '{row['neg_value']}' is not one of {', '.join(NEG_VALUES)}")
            if self.options.neg_value and row["neg_value"] != self.options.neg_value:
                continue
            examples.append(Example(f"comvg-{row['id']}", _image_pair(row, images), (row["sentence"],), ((0, 0),), {"neg_value": row["neg_value"]}))
        return examples

    def train_pool(self, seed: int) -> list[Example] | None:
        if self.options.train_file is None:
            return None
        images = self.require_data_root() / self.options.train_images
        examples = []
        for line, row in enumerate(read_csv(self.data_file(self.options.train_file), TRAIN_COLUMNS), start=2):
            examples.append(Example(f"comvg-train-{line - 1}", _image_pair(row, images), (row["sentence"],), ((0, 0),), {}))
        return examples

    def outcomes(self, scores, positives) -> dict[str, float]:
        (image, text), = positives
        return {"accuracy": image_choice_correct(scores, image, text)}

    def summarize(self, metrics) -> dict[str, float]:
        groups = metrics["breakdown"].get("neg_value", {})
        present = [groups[value]["accuracy"] for value in NEG_VALUES if value in groups]
        return {"average": sum(present) / len(present)} if present else {}

    def describe(self) -> str:
        training = (
            f" Training: <root>/{self.options.train_file} (columns {','.join(TRAIN_COLUMNS)}; the release's "
            f"data/comvg_train.csv from its Google Drive link) and images <root>/{self.options.train_images}/<image_id>.jpg."
            if self.options.train_file else ""
        )
        return (
            f"<root>/{self.options.csv} (columns {','.join(COLUMNS)}) and images "
            f"<root>/{self.options.images}/<image_id>.jpg. The csv ships with the DSD release "
            "(data/compositional_visual_genome.csv) and ComCLIP (datasets/ComVG.csv); the images "
            "are Visual Genome images (VG_100K and VG_100K_2, from the Visual Genome website)." + training
        )


def _image_pair(row: dict[str, str], images) -> tuple[ImageRef, ImageRef]:
    """The row's positive and negative images, `<images>/<image_id>.jpg`."""
    return tuple(ImageRef(row[column], images / f"{row[column]}.jpg") for column in ("pos_image_id", "neg_image_id"))
