"""Harness overhead: examples/s of vlbench's evaluation loop (image prefetch, checks, appending
scores to the run record) against a bare loop calling the same matcher on the same examples.

    python benchmarks/harness_overhead.py [--examples 2000] [--matcher color-words]

Prints both rates and their ratio (harness / bare); near 1.0 means the harness adds little.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import vlbench
from vlbench.evaluation import load_images, score_examples
from vlbench.records import RunDirectory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--matcher", default="color-words")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    examples = vlbench.create_task("colors", n_examples=args.examples).examples(seed=0)
    matcher = vlbench.create_matcher(args.matcher, device="cpu")

    started = time.perf_counter()
    with torch.inference_mode():
        bare = [matcher.score(load_images(example), example.texts).tolist() for example in examples]
    bare_seconds = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as directory:
        run_dir = RunDirectory(Path(directory))
        started = time.perf_counter()
        with run_dir.score_appender() as append:
            score_examples(matcher, examples, args.batch_size, append)
        harness_seconds = time.perf_counter() - started
        stored = run_dir.read_scores()
    assert [stored[example.id].scores for example in examples] == bare, "harness and bare loop disagree"

    print(f"examples: {len(examples)}, matcher: {args.matcher}, torch threads: {torch.get_num_threads()}")
    print(f"bare loop:       {len(examples) / bare_seconds:9.1f} examples/s")
    print(f"vlbench harness: {len(examples) / harness_seconds:9.1f} examples/s")
    print(f"ratio harness/bare: {bare_seconds / harness_seconds:.2f} (scores identical)")


if __name__ == "__main__":
    main()
