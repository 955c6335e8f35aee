"""`diffusion-itm` scoring speed against upstream diffusion-itm's loop ported to the same model
(`benchmarks/upstream_diffusion_itm.py`), with the mini SD, on mini ComVG or on the released ComVG csv.

    python benchmarks/diffusion_itm_speed.py [--examples 100] [--repeats 3] [--normalize] [--released-comvg]

First both score a few examples with the latent distribution's mean and the same noise, and the
script prints the largest score difference (it stops if they differ: they would not compute the
same score). Then, with upstream's defaults on both sides (latent samples, S = 10, batches of 4
examples for the port), the two alternate `--repeats` times over the same `--examples` examples:
vlbench timed as `timings.score_seconds` of a run with an empty feature cache (image loading,
scoring, records), the port over the same examples with their images loaded as it goes. Prints
pairs/s (medians, ranges), UNet passes (latents through the UNet) of each, and the ratio of the
medians. `--released-comvg` scores the released csv's examples (placeholder images, one colour per
image id; `--examples 0` for all 5,400), where images and sentences repeat across examples and
vlbench computes each (image, text, timestep) job once.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from medians import print_rates  # noqa: E402
from placeholders import REAL_COMVG_CSV, comvg_root  # noqa: E402
from upstream_diffusion_itm import UpstreamDiffusionITM  # noqa: E402

AGREEMENT = 1e-4  # float32 scores, summed in different orders


def agreement(root: str, examples, normalize: bool) -> float:
    """The largest |score difference| of the two on `examples`, with the latent's mean and vlbench's noise."""
    import vlbench
    from vlbench.evaluation import load_images

    matcher = vlbench.create_matcher("diffusion-itm", model="mini", latent="mean", normalize=normalize, feature_cache=False)
    port = UpstreamDiffusionITM(root, unconditional=normalize, latent="mean")
    port.noise_bank = torch.stack([matcher.noise(t, port.noise_bank.shape[1:]) for t in port.timesteps])
    loaded = [(load_images(example), list(example.texts)) for example in examples]
    with torch.inference_mode():
        ours = [matcher.score(images, texts) for images, texts in loaded]
        theirs = port.score([([image.pixels for image in images], texts) for images, texts in loaded])
    return max((a - b).abs().max().item() for a, b in zip(ours, theirs, strict=True))


def port_seconds(port: UpstreamDiffusionITM, examples) -> float:
    """Seconds the port takes over `examples`, loading their images as upstream's DataLoader does."""
    from vlbench.evaluation import load_images

    started = time.perf_counter()
    for start in range(0, len(examples), port.batch_size):
        batch = examples[start : start + port.batch_size]
        port.score([([image.pixels for image in load_images(example)], list(example.texts)) for example in batch])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100, help="a seeded sample of N examples (0: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--normalize", action="store_true", help="both subtract the unconditional error (upstream's --img_retrieval)")
    parser.add_argument("--released-comvg", action="store_true", help="the released ComVG csv with placeholder images instead of mini ComVG")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers.utils import logging

    logging.disable_progress_bar()  # the port loads the text encoder with transformers
    with tempfile.TemporaryDirectory() as directory:
        os.environ["VLBENCH_CACHE"] = directory  # the mini-world is generated here
        from vlbench import feature_cache
        from vlbench.config import load_run_config
        from vlbench.matchers.mini_models import mini_model_dir
        from vlbench.runner import draw, prepare, run

        task = {"task": "comvg", "data_root": str(comvg_root(Path(directory) / "comvg", REAL_COMVG_CSV))} if args.released_comvg else {"task": "mini-comvg"}
        values = {**task, "matcher": "diffusion-itm", "model": "mini", "limit": args.examples or None, "device": "cpu", "matcher_options": {"normalize": args.normalize}}
        examples = draw(prepare(load_run_config(None, values)), 0).evaluation
        root = str(mini_model_dir("mini-sd"))
        difference = agreement(root, examples[:4], args.normalize)
        if difference > AGREEMENT:
            raise SystemExit(f"vlbench and the port differ by {difference:.3g} (> {AGREEMENT}) with the same latents and noise")
        port = UpstreamDiffusionITM(root, unconditional=args.normalize)

        def vlbench_seconds(repeat: int) -> tuple[float, int]:
            feature_cache.cache_root = lambda: Path(directory) / f"features-{repeat}"  # empty each repeat
            result = run(prepare(load_run_config(None, {**values, "runs_dir": str(Path(directory) / f"runs-{repeat}")})), 0)
            return result.results["timings"]["score_seconds"], result.results["timings"]["work"]["unet_passes_scoring"]

        times: dict[str, list[float]] = {"upstream port": [], "vlbench diffusion-itm": []}
        with torch.inference_mode():
            for repeat in range(args.repeats):
                times["upstream port"].append(port_seconds(port, examples))
                seconds, vlbench_passes = vlbench_seconds(repeat)
                times["vlbench diffusion-itm"].append(seconds)
    pairs = sum(example.n_pairs for example in examples)
    port_passes = pairs * len(port.timesteps) * (2 if args.normalize else 1)
    print(f"{'the released ComVG csv (placeholder images)' if args.released_comvg else 'mini ComVG'}, {len(examples)} examples ({pairs} pairs), mini SD, S = {len(port.timesteps)}, normalize {args.normalize}, torch threads {torch.get_num_threads()}, {args.repeats} alternating repeats")
    print(f"scores with the latent mean and the same noise agree to {difference:.2g}")
    print_rates(times, pairs, "pairs/s", "upstream port")
    print(f"UNet passes: port {port_passes:,}, vlbench {vlbench_passes:,}; VAE encodes: port {pairs * len(port.timesteps):,} images, vlbench one per distinct image")


if __name__ == "__main__":
    main()
