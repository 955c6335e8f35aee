"""Memoised diffusion jobs: UNet passes a Stable Diffusion matcher makes on the released ComVG
csv (placeholder images, one colour per image id; the mini SD), against the passes of scoring each
example on its own (the plan's count, `vlbench suite plan`).

    python benchmarks/memoised_jobs.py [--matcher dsd-release] [--sampling-steps 10] [--limit N]

Real ComVG repeats images and sentences across its 5,400 examples; a job (image, text, timestep)
is computed once per run. The ratio does not depend on the number of timesteps (each job is
repeated across every timestep alike), so the default uses 10 to keep the run short; the release
runs ComVG with 40.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matcher", default="dsd-release", help="dsd-release, diffusion-itm or dsd")
    parser.add_argument("--sampling-steps", type=int, default=10, help="S of dsd-release and diffusion-itm (dsd: its four noise levels)")
    parser.add_argument("--limit", type=int, default=None, help="score a seeded sample of N examples instead of all")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    sys.path.insert(0, str(REPOSITORY / "tests"))
    from placeholders import REAL_COMVG_CSV, comvg_root

    from vlbench.compute import run_work
    from vlbench.config import load_run_config
    from vlbench.runner import draw, prepare, run

    with tempfile.TemporaryDirectory() as directory:
        os.environ["VLBENCH_CACHE"] = directory
        root = comvg_root(Path(directory) / "comvg", REAL_COMVG_CSV)
        values = {"task": "comvg", "matcher": args.matcher, "model": "mini", "data_root": str(root), "limit": args.limit, "device": "cpu",
                  "matcher_options": {} if args.matcher == "dsd" else {"sampling_steps": args.sampling_steps}, "runs_dir": str(Path(directory) / "runs")}
        prepared = prepare(load_run_config(None, values))
        per_example = sum(prepared.matcher_class.unet_passes(prepared.matcher_options, [example], False) for example in draw(prepared, 0).evaluation)
        planned = run_work(prepared, 0).scoring
        started = time.perf_counter()
        result = run(prepared, 0)
        seconds = time.perf_counter() - started
    counted = result.results["timings"]["work"]["unet_passes_scoring"]
    setting = f"{len(prepared.matcher_options.noise_levels)} noise levels" if args.matcher == "dsd" else f"S = {args.sampling_steps}"
    print(f"{args.matcher} on the released ComVG csv ({result.results['n']} examples, placeholder images, mini SD), {setting}")
    print(f"UNet passes scoring each example on its own: {per_example:,}")
    print(f"UNet passes made (memoised jobs):            {counted:,} in {seconds:.1f} s (the plan's estimate: {planned:,})")
    print(f"ratio made / per-example: 1/{per_example / counted:.2f}")


if __name__ == "__main__":
    main()
