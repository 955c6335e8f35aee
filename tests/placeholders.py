"""Placeholder images for annotation files whose real images are not shipped."""

import hashlib
from pathlib import Path

from PIL import Image

# The released ComVG annotation file, as shipped (tests/data/real).
REAL_COMVG_CSV = Path(__file__).parent / "data" / "real" / "comvg" / "compositional_visual_genome.csv"


def write_images(paths, size=(8, 8), mode="RGB") -> None:
    """A small image at each path, its colour derived from the file name."""
    for path in paths:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        red, green, blue = hashlib.sha256(path.name.encode()).digest()[:3]
        colour = (red, green, blue, 128) if mode == "RGBA" else (red, green, blue)
        Image.new(mode, size, colour).save(path)


def comvg_root(root: Path, csv_source: Path) -> Path:
    """The ComVG layout around `csv_source`, with a placeholder jpg for every image id."""
    import csv

    root.mkdir(parents=True, exist_ok=True)
    (root / "compositional_visual_genome.csv").write_bytes(csv_source.read_bytes())
    with open(csv_source, newline="", encoding="utf-8-sig", errors="replace") as handle:  # any encoding: the ids are ASCII
        ids = {row[key] for row in csv.DictReader(handle) for key in ("pos_image_id", "neg_image_id")}
    write_images(root / "vg_concept" / f"{image_id}.jpg" for image_id in ids)
    return root
