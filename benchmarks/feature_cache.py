"""Feature cache: evaluation time of a CLIP matcher on mini ComVG with an empty feature cache, then
again (a new run directory, so nothing is resumed) with the features the first run cached.

    python benchmarks/feature_cache.py [--matcher clip] [--task mini-comvg] [--shots 0]

Prints both scoring times and their ratio (first / second); the metrics must agree.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matcher", default="clip", help="clip or clip-ft (cocoop's text tower runs per pair, so only its image features cache)")
    parser.add_argument("--task", default="mini-comvg")
    parser.add_argument("--shots", default="0", help="few-shot training before each evaluation (trainable matchers)")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    with tempfile.TemporaryDirectory() as directory:
        os.environ["VLBENCH_CACHE"] = directory  # empty feature cache (the mini-world is generated here too)
        from vlbench.config import load_run_config
        from vlbench.runner import prepare, run

        def evaluate(name: str) -> tuple[float, float, dict]:
            config = load_run_config(None, {"task": args.task, "matcher": args.matcher, "model": "mini", "shots": args.shots, "runs_dir": os.path.join(directory, name)})
            prepared = prepare(config)
            prepared.task.examples(0)  # generate the mini-world before timing
            started = time.perf_counter()
            result = run(prepared, 0)
            return result.results["timings"]["score_seconds"], time.perf_counter() - started, result.results

        first_scoring, first_total, first = evaluate("first")
        second_scoring, second_total, second = evaluate("second")
    assert first["metrics"] == second["metrics"], "cached features changed the metrics"
    print(f"{args.task}, matcher {args.matcher} (mini CLIP), {first['n']} examples, CPU threads: {__import__('torch').get_num_threads()}")
    print(f"first evaluation (empty cache):  scoring {first_scoring:6.2f} s, run {first_total:6.2f} s")
    print(f"second evaluation (cached):      scoring {second_scoring:6.2f} s, run {second_total:6.2f} s")
    print(f"ratio first/second: scoring {first_scoring / second_scoring:.1f}x, run {first_total / second_total:.1f}x (metrics identical)")


if __name__ == "__main__":
    main()
