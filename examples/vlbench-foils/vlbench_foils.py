"""A vlbench plugin: a task reading image captions and their foils (one word changed) from a folder.

Layout: `<root>/foils.jsonl`, one line per example
`{"id": "1", "image": "dog.jpg", "caption": "a dog on a sofa", "foil": "a cat on a sofa", "kind": "noun"}`,
and the images under `<root>/images/`.
"""

from dataclasses import dataclass

from vlbench.errors import VlbenchError
from vlbench.metrics import text_top_k
from vlbench.options import check
from vlbench.readers import read_jsonl, require_keys
from vlbench.types import Example, ImageRef, Task

FIELDS = ("id", "image", "caption", "foil")


@dataclass
class FoilsOptions:
    file: str = "foils.jsonl"
    kind: str | None = None  # keep only foils of this kind

    def __post_init__(self):
        check(self.file.endswith(".jsonl"), "file", f"must name a .jsonl file, got {self.file!r}")


class FoilsTask(Task):
    """One image, two texts: its caption and a foil. Metric: `accuracy` (the caption scores higher),
    overall and per `kind`."""

    name = "foils"
    summary = "Example plugin: tell an image's caption from its foil (one word changed)."
    headline = "accuracy"
    Options = FoilsOptions

    def examples(self, seed):
        path = self.data_file(self.options.file)
        images = self.require_data_root() / "images"
        examples = []
        for number, record in enumerate(read_jsonl(path), start=1):
            require_keys(record, FIELDS, f"{path}, line {number}")
            if record["caption"] == record["foil"]:
                raise VlbenchError(f"{path}, line {number}: the foil equals the caption")
            if self.options.kind and record.get("kind") != self.options.kind:
                continue
            image = ImageRef(record["image"], images / record["image"])
            tags = {"kind": record["kind"]} if "kind" in record else {}
            examples.append(Example(f"foils-{record['id']}", (image,), (record["caption"], record["foil"]), ((0, 0),), tags))
        return examples

    def outcomes(self, scores, positives):
        ((image, text),) = positives
        return {"accuracy": text_top_k(scores, image, text, ks=(1,))["top1"]}

    def describe(self):
        return f"<root>/{self.options.file} (one JSON object per line: {', '.join(FIELDS)}, optional kind) and <root>/images/<image>"
