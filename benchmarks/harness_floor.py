"""The harness loop against its floor: `random` on the released ComVG csv (5,400 examples, a
placeholder jpg per image id) through `vlbench run`, against a 20-line loop that reads the csv,
opens both images of each row, scores them and writes one JSON line per example.

    python benchmarks/harness_floor.py [--repeats 3] [--image-workers N]

The two are interleaved `--repeats` times; prints examples/s (medians, ranges) and the ratio
harness / floor. vlbench is timed as `timings.score_seconds` (image loading, scoring, scores and
example records, thumbnails included).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPOSITORY = Path(__file__).resolve().parent.parent


def floor_loop(root: Path, out: Path) -> tuple[float, int]:
    """Seconds and examples of the plain loop."""
    started = time.perf_counter()
    rng = random.Random(0)
    n = 0
    with open(root / "compositional_visual_genome.csv", newline="", encoding="utf-8-sig", errors="replace") as rows, open(out, "w") as lines:
        for row in csv.DictReader(rows):
            images = []
            for key in ("pos_image_id", "neg_image_id"):
                with Image.open(root / "vg_concept" / f"{row[key]}.jpg") as image:
                    images.append(image.convert("RGB"))
            scores = [[rng.random()] for _ in images]
            lines.write(json.dumps({"id": row["id"], "scores": scores}) + "\n")
            n += 1
    return time.perf_counter() - started, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image-workers", type=int, default=None, help="vlbench's image loading threads (default: its own)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPOSITORY / "tests"))
    from placeholders import REAL_COMVG_CSV, comvg_root

    from vlbench.config import load_run_config
    from vlbench.runner import prepare, run

    with tempfile.TemporaryDirectory() as directory:
        root = comvg_root(Path(directory) / "comvg", REAL_COMVG_CSV)
        floor, harness = [], []
        for repeat in range(args.repeats):
            seconds, n = floor_loop(root, Path(directory) / f"floor-{repeat}.jsonl")
            floor.append(n / seconds)
            config = load_run_config(None, {"task": "comvg", "matcher": "random", "data_root": str(root), **({"image_workers": args.image_workers} if args.image_workers else {}), "runs_dir": str(Path(directory) / f"runs-{repeat}")})
            result = run(prepare(config), 0)
            harness.append(result.results["timings"]["examples_scored"] / result.results["timings"]["score_seconds"])
    print(f"random on the released ComVG csv ({n} examples, placeholder images), {args.repeats} interleaved repeats, {args.image_workers or 'default'} image loading threads, examples/s:")
    print(f"20-line floor:   {statistics.median(floor):8.1f} (range {min(floor):.1f}–{max(floor):.1f})")
    print(f"vlbench harness: {statistics.median(harness):8.1f} (range {min(harness):.1f}–{max(harness):.1f})")
    print(f"ratio harness / floor: {statistics.median(harness) / statistics.median(floor):.2f}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
