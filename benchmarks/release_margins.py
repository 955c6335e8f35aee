"""How many of `dsd-release`'s training examples already meet the hinge margin zero-shot, so give
no gradient: 5% of mini ComVG (seed 0, S = 10, the boards' run), scored at the scoring grid and at
`--rounds` rounds of training draws (each pair at its own timestep, latent sample and noise).

    python benchmarks/release_margins.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    with tempfile.TemporaryDirectory() as directory:
        os.environ["VLBENCH_CACHE"] = directory  # the mini-world is generated here
        from vlbench.config import load_run_config
        from vlbench.evaluation import load_images
        from vlbench.losses import example_loss
        from vlbench.runner import draw, prepare
        from vlbench.runtime import Runtime

        prepared = prepare(load_run_config(None, {"task": "mini-comvg", "matcher": "dsd-release", "model": "mini", "shots": "5%", "matcher_options": {"sampling_steps": 10}}))
        training = draw(prepared, 0).training
        matcher = prepared.matcher_class(prepared.matcher_options, Runtime(prepared.device, 0, "mini", False))
        margin = matcher.train_defaults["margin"]

        def losses() -> list[float]:
            return [example_loss(matcher.score(load_images(example), example.texts), example.positives, "hinge", margin).item() for example in training]

        with torch.no_grad():
            at_grid = losses()
            matcher.training_noise = torch.Generator().manual_seed(0)
            rounds = [losses() for _ in range(args.rounds)]
    print(f"{len(training)} training examples, hinge margin {margin}")
    print(f"zero loss at the scoring grid: {sum(loss == 0 for loss in at_grid)}")
    counts = [sum(loss == 0 for loss in losses_) for losses_ in rounds]
    print(f"zero loss at training draws, per round: {counts} (median {statistics.median(counts)})")


if __name__ == "__main__":
    main()
