"""`colors`: an embedded, procedurally drawn two-image choice task that needs no download.

Each example is a caption such as "a red circle" and two images: the shape it names, and one that
differs in colour or in shape (tag ``neg_value``: ``color`` or ``shape``). The positive image's
position is drawn at random. It exists so vlbench runs end to end offline; it is not a benchmark.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import partial

from vlbench.metrics import image_choice_correct
from vlbench.options import check
from vlbench.types import Example, ImageRef, Task

COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 205, 40)}
SHAPES = ("circle", "square", "triangle")
BACKGROUND = (245, 245, 245)


@dataclass
class ColorsOptions:
    n_examples: int = 200
    image_size: int = 32
    dataset_seed: int = 0

    def __post_init__(self) -> None:
        check(self.n_examples >= 1, "n_examples", f"must be at least 1, got {self.n_examples}")
        check(self.image_size >= 8, "image_size", f"must be at least 8 pixels, got {self.image_size}")


def draw(color: str, shape: str, size: int, jitter: int) -> "PIL.Image.Image":  # noqa: F821
    """`shape` in `color` on a light background, offset by a seeded jitter."""
    from PIL import Image, ImageDraw

    rng = random.Random(jitter)
    image = Image.new("RGB", (size, size), BACKGROUND)
    radius = size * rng.uniform(0.25, 0.35)
    cx, cy = (size / 2 + rng.uniform(-size, size) * 0.1 for _ in range(2))
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    pen = ImageDraw.Draw(image)
    if shape == "circle":
        pen.ellipse(box, fill=COLORS[color])
    elif shape == "square":
        pen.rectangle(box, fill=COLORS[color])
    else:
        pen.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=COLORS[color])
    return image


class ColorsTask(Task):
    name = "colors"
    version = "1"
    summary = "Embedded demo: pick which of two drawn shapes matches 'a <colour> <shape>' (offline, no data)."
    Options = ColorsOptions
    reads_data_root = False
    examples_vary_by_seed = False

    def examples(self, seed: int) -> list[Example]:
        options = self.options
        rng = random.Random(f"colors:{options.dataset_seed}")
        examples = []
        for index in range(options.n_examples):
            color, shape = rng.choice(sorted(COLORS)), rng.choice(SHAPES)
            swap = rng.choice(("color", "shape"))
            if swap == "color":
                other = (rng.choice([c for c in sorted(COLORS) if c != color]), shape)
            else:
                other = (color, rng.choice([s for s in SHAPES if s != shape]))
            positive_first = rng.random() < 0.5
            scenes = [(color, shape), other] if positive_first else [other, (color, shape)]
            images = tuple(
                ImageRef(f"{index}-{slot}", render=partial(draw, c, s, options.image_size, rng.randrange(2**32)))
                for slot, (c, s) in enumerate(scenes)
            )
            examples.append(Example(f"colors-{index}", images, (f"a {color} {shape}",), ((0 if positive_first else 1, 0),), {"neg_value": swap}))
        return examples

    def outcomes(self, scores, positives) -> dict[str, float]:
        (image, text), = positives
        return {"accuracy": image_choice_correct(scores, image, text)}

    def describe(self) -> str:
        return f"{self.summary} Generated in memory from options {self.options}; reads no files."
