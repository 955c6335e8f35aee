"""Test-only components, registered at run time (`vlbench.registry.*.register`)."""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass

from vlbench.metrics import image_choice_correct
from vlbench.types import Example, ImageRef, Matcher, Task


@dataclass
class CountingOptions:
    log: str = ""
    delay: float = 0.0
    nan_key: str = ""


class CountingMatcher(Matcher):
    """Scores a pair by text length minus image key length; appends each example's first image
    key to `log` (one line per scoring call) and sleeps `delay` seconds per example. An example
    whose first image key is `nan_key` gets NaN scores."""

    name = "counting"
    summary = "Test matcher that logs every scoring call."
    Options = CountingOptions

    def score(self, images, texts):
        import torch

        if self.options.log:
            with open(self.options.log, "a") as handle:
                handle.write(images[0].key + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        time.sleep(self.options.delay)
        if images[0].key == self.options.nan_key:
            return torch.full((len(images), len(texts)), float("nan"))
        return torch.tensor([[float(len(text) - len(image.key)) for text in texts] for image in images])


class TinyFilesTask(Task):
    """Reads `<root>/pairs.csv` (`id,text,pos_image,neg_image`) with images under `<root>/images/`."""

    name = "tiny-files"
    summary = "Test task reading a csv and image files."
    metric_names = ("accuracy",)

    def examples(self, seed):
        root = self.require_data_root()
        with open(root / "pairs.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        return [
            Example(row["id"], (ImageRef(row["pos_image"], root / "images" / row["pos_image"]), ImageRef(row["neg_image"], root / "images" / row["neg_image"])), (row["text"],), ((0, 0),), {})
            for row in rows
        ]

    def outcomes(self, scores, positives):
        (image, text), = positives
        return {"accuracy": image_choice_correct(scores, image, text)}

    def describe(self):
        return "<root>/pairs.csv (id,text,pos_image,neg_image) and <root>/images/<name>"


def register_all() -> None:
    from vlbench import registry

    registry.matchers.register("counting", CountingMatcher, origin="tests")
    registry.tasks.register("tiny-files", TinyFilesTask, origin="tests")
