"""`clip` scoring speed against a plain open_clip loop, with the mini CLIP, on mini ComVG or on the released ComVG csv.

    python benchmarks/clip_speed.py [--repeats 5] [--batch-size 16] [--image-workers N] [--no-thumbnails] [--released-comvg] [--parts]

The plain loop is what a user would write: per batch of examples, load the images, preprocess,
encode every image and text of the batch, normalise, one dot product per example. vlbench is
timed as `timings.score_seconds` of a run (image loading, scoring, records), once with empty
feature and thumbnail caches (cold), then twice with the features and thumbnails the cold run
stored (warm: no image is decoded; the first of these merges the cold run's shards, one per
batch, as any run does once it finds many small shards; the second reads the merged shard). The four are interleaved `--repeats` times; medians, ranges and the ratios of the medians are printed.
`--released-comvg` scores the released csv's 5,400 examples (placeholder images, one colour per
image id), where 524 images fill 10,800 image slots: the plain loop encodes every slot, vlbench
each distinct image once (cold) or not at all (warm). Also prints the cold run's image encoder
passes: `ENCODE_BATCH` images each, the last pass of a scoring batch filled up with images the
loading threads decoded for later examples, then with repeats.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from medians import print_rates  # noqa: E402
from placeholders import REAL_COMVG_CSV, comvg_root  # noqa: E402


def plain_loop(examples, clip, batch_size: int, timed=lambda part, compute: compute()) -> float:
    """Seconds the plain open_clip loop takes over `examples`; `timed(part, compute)` runs each
    of its parts (`plain_loop_parts` times them)."""
    import torch
    import torch.nn.functional as F

    def similarities(batch, image_embeddings, text_embeddings):
        image_at, text_at = 0, 0
        for example in batch:
            (image_embeddings[image_at : image_at + len(example.images)] @ text_embeddings[text_at : text_at + len(example.texts)].T).tolist()
            image_at, text_at = image_at + len(example.images), text_at + len(example.texts)

    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            pictures = timed("loading images", lambda: [ref.load() for example in batch for ref in example.images])
            pixels = timed("preprocessing", lambda: torch.stack([clip.preprocess(picture) for picture in pictures]))
            image_embeddings = timed("image encoder", lambda: F.normalize(clip.model.encode_image(pixels), dim=-1))
            tokens = timed("tokenizer", lambda: clip.tokenizer([text for example in batch for text in example.texts]))
            text_embeddings = timed("text encoder", lambda: F.normalize(clip.model.encode_text(tokens), dim=-1))
            timed("similarities", lambda: similarities(batch, image_embeddings, text_embeddings))
    return time.perf_counter() - started


def plain_loop_parts(examples, clip, batch_size: int) -> dict[str, float]:
    """Seconds the plain loop spends in each of its parts, timed one by one (`--parts`)."""
    seconds: dict[str, float] = {}

    def timed(part, compute):
        started = time.perf_counter()
        result = compute()
        seconds[part] = seconds.get(part, 0.0) + time.perf_counter() - started
        return result

    plain_loop(examples, clip, batch_size, timed)
    return seconds


def loading_thread_parts(examples) -> dict[str, float]:
    """Seconds of the work vlbench's loading threads do for a cold run, timed one by one on this
    thread (`--parts`): content keys (all a warm run does), decoding (through the recent-images
    cache), thumbnails."""
    from vlbench.evaluation import RecentImages, load_images
    from vlbench.example_records import thumbnail_line

    seconds = dict.fromkeys(("content keys", "decoding", "thumbnails"), 0.0)
    recent = RecentImages()
    for example in examples:
        started = time.perf_counter()
        images = load_images(example, recent)
        for image in images:
            image.content_key  # noqa: B018 - computed as the loading thread does
        keyed = time.perf_counter()
        for image in images:
            image.pixels  # noqa: B018 - decoded as the loading thread does
        decoded = time.perf_counter()
        for image in images:
            thumbnail_line(image)
        seconds["content keys"] += keyed - started
        seconds["decoding"] += decoded - keyed
        seconds["thumbnails"] += time.perf_counter() - decoded
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-workers", type=int, default=None, help="vlbench's image loading threads (default: its own)")
    parser.add_argument("--no-thumbnails", action="store_true", help="vlbench runs without keeping thumbnails for the report")
    parser.add_argument("--released-comvg", action="store_true", help="the released ComVG csv with placeholder images instead of mini ComVG")
    parser.add_argument("--parts", action="store_true", help="also time the plain loop's parts and the loading thread's work one by one (medians over the repeats)")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    with tempfile.TemporaryDirectory() as directory:
        os.environ["VLBENCH_CACHE"] = directory  # the mini-world is generated here
        from vlbench.config import load_run_config
        from vlbench.matchers.clip.loading import load_open_clip
        from vlbench.runner import prepare, run

        from vlbench import feature_cache

        task = {"task": "comvg", "data_root": str(comvg_root(Path(directory) / "comvg", REAL_COMVG_CSV))} if args.released_comvg else {"task": "mini-comvg"}

        from vlbench.matchers.clip.features import ClipFeatures

        passes: list[int] = []  # image encoder passes of the last run
        encode = ClipFeatures._encode_images
        ClipFeatures._encode_images = lambda features, images: passes.append(len(images)) or encode(features, images)

        def vlbench_run(name: str, cache: Path) -> float:
            passes.clear()
            feature_cache.cache_root = lambda: cache  # this repeat's feature cache
            if name.startswith("cold"):
                (Path(directory) / "thumbnails.sqlite3").unlink(missing_ok=True)  # and no thumbnails
            config = load_run_config(None, {**task, "matcher": "clip", "model": "mini", "batch_size": args.batch_size, **({"image_workers": args.image_workers} if args.image_workers else {}), "thumbnails": not args.no_thumbnails, "runs_dir": str(Path(directory) / name)})
            return run(prepare(config), 0).results["timings"]["score_seconds"]

        prepared = prepare(load_run_config(None, {**task, "matcher": "clip", "model": "mini"}))
        examples = prepared.task.examples(0)  # generates the mini-world before any timing
        clip = load_open_clip("mini", "cpu")
        times: dict[str, list[float]] = {"plain open_clip loop": [], "vlbench clip, cold cache": [], "vlbench clip, warm cache": [], "vlbench clip, warm, merged": []}
        parts: list[dict[str, float]] = []
        for repeat in range(args.repeats):
            times["plain open_clip loop"].append(plain_loop(examples, clip, args.batch_size))
            cache = Path(directory) / f"cache-{repeat}"
            times["vlbench clip, cold cache"].append(vlbench_run(f"cold-{repeat}", cache))
            cold_passes = len(passes)
            times["vlbench clip, warm cache"].append(vlbench_run(f"warm-{repeat}", cache))
            times["vlbench clip, warm, merged"].append(vlbench_run(f"merged-{repeat}", cache))
            if args.parts:
                parts.append({**plain_loop_parts(examples, clip, args.batch_size), **{f"vlbench's loading thread: {part}": value for part, value in loading_thread_parts(examples).items()}})
    pairs = sum(example.n_pairs for example in examples)
    import torch

    print(f"{'the released ComVG csv (placeholder images)' if args.released_comvg else 'mini ComVG'}, {len(examples)} examples ({pairs} pairs), batch size {args.batch_size}, torch threads {torch.get_num_threads()}, {args.repeats} interleaved repeats")
    print(f"vlbench: {args.image_workers or 'default'} image loading threads, thumbnails {'off' if args.no_thumbnails else 'kept'}")
    print_rates(times, pairs, "pairs/s", "plain open_clip loop")
    distinct = len({ref for example in examples for ref in example.images})
    print(f"image encoder passes of a cold run: {cold_passes} of {feature_cache.ENCODE_BATCH} images ({distinct} distinct images: at least {-(-distinct // feature_cache.ENCODE_BATCH)}); the plain loop's: {-(-len(examples) // args.batch_size)} of up to {args.batch_size * max(len(example.images) for example in examples)}")
    if parts:
        import statistics

        print("parts timed one by one, median seconds (the plain loop's, then the loading threads' work in a cold run): " + ", ".join(f"{part} {statistics.median(run[part] for run in parts):.3f}" for part in parts[0]))


if __name__ == "__main__":
    main()
