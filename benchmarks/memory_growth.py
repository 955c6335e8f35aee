"""Where a longer run's Python memory goes: the soak's two ComVG roots (`benchmarks/soak.py`),
each scored by `clip` in its own process under tracemalloc, and the source lines whose
allocations live at the end of scoring grew most from the small run to the large one.

    python benchmarks/memory_growth.py [--examples 10000] [--small 1000] [--top 12]

tracemalloc sees Python's allocator only (not torch's or PIL's buffers) and slows the runs about
fourfold (about 6 minutes for the defaults on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from soak import make_roots


def traced_run(root: Path, runs: Path) -> dict[str, float]:
    """MiB live at the end of scoring per source line, in a `clip` run of `root` (this process)."""
    import tracemalloc

    import vlbench.runner as runner
    from vlbench.config import load_run_config

    snapshots = []
    score_examples = runner.score_examples

    def scoring_then_snapshot(*args, **kwargs):
        scored = score_examples(*args, **kwargs)
        snapshots.append(tracemalloc.take_snapshot())  # the matcher and its caches still alive
        return scored

    runner.score_examples = scoring_then_snapshot
    tracemalloc.start()
    config = load_run_config(None, {"task": "comvg", "data_root": str(root), "matcher": "clip", "model": "mini", "runs_dir": str(runs), "batch_size": 32})
    runner.run(runner.prepare(config), 0)
    statistics = snapshots[0].filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)]).statistics("lineno")
    return {str(line.traceback[0]): line.size / 2**20 for line in statistics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--traced-run", nargs=2, help=argparse.SUPPRESS)  # ROOT RUNS: one traced run, printed as JSON
    args = parser.parse_args()
    if args.traced_run:
        print(json.dumps(traced_run(Path(args.traced_run[0]), Path(args.traced_run[1]))))
        return
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        os.environ["VLBENCH_CACHE"] = str(directory / "cache")
        roots = make_roots(directory, args.examples, args.small)
        sizes = []
        for label, root in zip(("small", "large"), roots):
            command = [sys.executable, __file__, "--traced-run", str(root), str(directory / f"runs-{label}")]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            sizes.append(json.loads(output.splitlines()[-1]))
    small, large = sizes
    print(f"Python allocations live at the end of scoring: {args.small} examples {sum(small.values()):.1f} MiB, {args.examples} examples {sum(large.values()):.1f} MiB")
    growth = sorted(((large.get(line, 0.0) - small.get(line, 0.0), line) for line in set(small) | set(large)), reverse=True)
    for mib, line in growth[: args.top]:
        print(f"{mib:+8.2f} MiB  {line}")


if __name__ == "__main__":
    main()
