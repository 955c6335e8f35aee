"""Soak: a mini-world ComVG run over many examples stays within bounded memory.

    python benchmarks/soak.py [--examples 10000] [--small 1000] [--matcher clip] [--model mini]

Generates a ComVG data root of `--examples` mini-world examples (the real csv format, one jpg per
image) and a root holding its first `--small` rows, runs `vlbench run` on each in a fresh process,
and prints each run's throughput and peak resident memory (the process's ru_maxrss), then the
ratio of the two peaks. Memory that does not grow with the number of examples gives a ratio near
1.0; the check fails above `--max-ratio` (1.2).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vlbench.tasks.miniworld.writers import write_comvg


def make_roots(directory: Path, examples: int, small: int) -> tuple[Path, Path]:
    """A root of `examples` generated examples, and one with its first `small` rows (same images)."""
    large = directory / f"comvg-{examples}"
    write_comvg(large, random.Random("soak"), 32, examples)
    with open(large / "compositional_visual_genome.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    small_root = directory / f"comvg-{small}"
    small_root.mkdir()
    (small_root / "vg_concept").symlink_to(large / "vg_concept")
    with open(small_root / "compositional_visual_genome.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows[: small + 1])
    return small_root, large


def measured_run(root: Path, runs: Path, matcher: str, model: str | None, batch_size: int) -> dict:
    """Run `vlbench run` on `root` in a new process; its wall time and peak RSS."""
    command = [sys.executable, "-m", "vlbench", "run", "--task", "comvg", "--data-root", str(root), "--matcher", matcher, "--runs-dir", str(runs), "--batch-size", str(batch_size)]
    if model:
        command += ["--model", model]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"vlbench run failed:\n{process.stderr.read().decode()[-2000:]}")
    (results,) = runs.rglob("results.json")
    record = json.loads(results.read_text())
    return {"n": record["n"], "seconds": seconds, "examples_per_second": record["n"] / record["timings"]["score_seconds"], "peak_rss_mib": usage.ru_maxrss / 1024, "accuracy": record["metrics"]["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--matcher", default="clip")
    parser.add_argument("--model", default="mini")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-ratio", type=float, default=1.2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        os.environ["VLBENCH_CACHE"] = str(directory / "cache")  # no feature cache from earlier runs
        started = time.perf_counter()
        small_root, large_root = make_roots(directory, args.examples, args.small)
        print(f"generated {args.examples} examples ({2 * args.examples} images) in {time.perf_counter() - started:.0f} s")
        measured = {}
        for label, root in (("small", small_root), ("large", large_root)):
            measured[label] = measured_run(root, directory / f"runs-{label}", args.matcher, args.model, args.batch_size)
            row = measured[label]
            print(
                f"{row['n']:>6} examples: {row['seconds']:6.1f} s wall, {row['examples_per_second']:7.1f} examples/s scoring, "
                f"peak RSS {row['peak_rss_mib']:7.1f} MiB, accuracy {100 * row['accuracy']:.2f}"
            )
    ratio = measured["large"]["peak_rss_mib"] / measured["small"]["peak_rss_mib"]
    verdict = "ok" if ratio <= args.max_ratio else f"FAIL (above {args.max_ratio})"
    print(f"peak RSS ratio {args.examples}/{args.small}: {ratio:.3f} {verdict}")
    if ratio > args.max_ratio:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
