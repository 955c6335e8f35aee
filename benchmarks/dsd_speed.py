"""Pairs/second of the batched DSD matchers against the straightforward per-pair implementation of
the same score (`tests/per_pair_reference.py`), same model and inputs, in one run; checks that
the scores agree and reports FLOPs per pair, achieved FLOP/s and its fraction of the measured
matmul peak. The two paths are timed alternately `--repeats` times; the medians and the range of
the ratio are printed, so contention on a shared machine shows as spread rather than as a speed-up.
FLOPs include scaled-dot-product attention, which PyTorch's counter counts as 0 on the CPU unless
its CPU kernel is given the formula of the others (done here).

    python benchmarks/dsd_speed.py                       # the mini SD, dsd and dsd-release
    python benchmarks/dsd_speed.py --model sd21-random --variants dsd --noise-levels 0.5 --examples 1

`sd21-random` is a randomly initialised UNet, VAE and text encoder with Stable Diffusion
2.1-base's shapes (`benchmarks/sd21.py`): a realistic cost profile without downloading weights.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

import vlbench
from vlbench.types import LoadedImage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from per_pair_reference import per_pair_dsd_scores, per_pair_release_scores  # noqa: E402
from sd21 import sd21_random  # noqa: E402

def inputs(n_examples: int, n_texts: int):
    """Mini RefCOCOg examples: one image and `n_texts` candidate texts each."""
    from vlbench.tasks.miniworld.tasks import MiniRefCOCOgOptions, MiniRefCOCOgTask

    examples = MiniRefCOCOgTask(MiniRefCOCOgOptions(), None).examples(seed=0)[:n_examples]
    return [([LoadedImage(ref.key, ref.load()) for ref in example.images], list(example.texts)[:n_texts]) for example in examples]


def count_cpu_attention() -> None:
    """Give the CPU attention kernel the FLOP formula the GPU kernels have (none is registered)."""
    kernel = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if kernel not in flop_counter.flop_registry:
        flop_counter.register_flop_formula(kernel)(lambda query, key, value, *args, out_shape=None, **kwargs: flop_counter.sdpa_flop_count(query, key, value))


def timed(function, batch) -> tuple[list[torch.Tensor], float]:
    started = time.perf_counter()
    scores = [function(images, texts) for images, texts in batch]
    return scores, time.perf_counter() - started


def flops_per_pair(function, images, texts) -> float:
    """FLOPs (matmuls and convolutions, as PyTorch's flop counter counts them) of scoring one
    example, per pair. Counted in a warm-up call: the counter's dispatch overhead stays out of the timings."""
    with FlopCounterMode(display=False) as flops:
        function(images, texts)
    return flops.get_total_flops() / (len(images) * len(texts))


def matmul_peak(size: int = 4096, repeats: int = 5) -> float:
    """Achieved FLOP/s of a large float32 matmul on this device: the peak to compare against."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def measure(name: str, model: str, options: dict, batch, repeats: int, peak: float) -> dict:
    matcher = vlbench.create_matcher(name, model=model, feature_cache=False, **options)
    reference = per_pair_dsd_scores if name == "dsd" else per_pair_release_scores

    def batched_path(images, texts):
        if hasattr(matcher, "results"):
            matcher.results.clear()  # memoised jobs: each repeat computes afresh
        return matcher.score(images, texts)

    images, texts = batch[0]
    batched_seconds, per_pair_seconds = [], []
    with torch.inference_mode():
        batched_flops = flops_per_pair(batched_path, images, texts)
        per_pair_flops = flops_per_pair(lambda images, texts: reference(matcher, images, texts), images, texts[:1])
        for _ in range(repeats):
            batched, seconds = timed(batched_path, batch)
            batched_seconds.append(seconds)
            per_pair, seconds = timed(lambda images, texts: reference(matcher, images, texts), batch)
            per_pair_seconds.append(seconds)
    pairs = sum(len(images) * len(texts) for images, texts in batch)
    difference = max((a - b).abs().max().item() for a, b in zip(batched, per_pair))
    batched_median, per_pair_median = statistics.median(batched_seconds), statistics.median(per_pair_seconds)
    ratios = [slow / fast for slow, fast in zip(per_pair_seconds, batched_seconds)]
    return {
        "variant": name, "pairs": pairs,
        "batched pairs/s": pairs / batched_median, "per-pair pairs/s": pairs / per_pair_median,
        "speed-up (median)": per_pair_median / batched_median, "speed-up range": f"{min(ratios):.2f}–{max(ratios):.2f}", "max |score difference|": difference,
        "batched GFLOP/pair": batched_flops / 1e9, "per-pair GFLOP/pair": per_pair_flops / 1e9,
        "batched of peak": batched_flops * pairs / batched_median / peak, "per-pair of peak": per_pair_flops * pairs / per_pair_median / peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mini", help="mini, sd21-random, or a Stable Diffusion folder")
    parser.add_argument("--variants", nargs="+", default=["dsd", "dsd-release"])
    parser.add_argument("--examples", type=int, default=4)
    parser.add_argument("--texts", type=int, default=10, help="candidate texts per example")
    parser.add_argument("--noise-levels", type=float, nargs="+", default=None, help="dsd noise levels (default: the matcher's)")
    parser.add_argument("--sampling-steps", type=int, default=10, help="dsd-release grid size S")
    parser.add_argument("--repeats", type=int, default=5, help="alternating timings of the two paths")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"], help="the UNet's precision, for both paths (half precision is for GPUs)")
    args = parser.parse_args()
    model = str(sd21_random()) if args.model == "sd21-random" else args.model
    batch = inputs(args.examples, args.texts)
    count_cpu_attention()
    peak = matmul_peak()
    print(f"model {args.model}, {args.examples} examples × {args.texts} texts, {torch.get_num_threads()} threads, float32 matmul peak {peak / 1e9:.0f} GFLOP/s, {args.repeats} alternating repeats")
    for name in args.variants:
        options = {"noise_levels": args.noise_levels} if name == "dsd" and args.noise_levels else {}
        if name == "dsd-release":
            options = {"sampling_steps": args.sampling_steps}
        options["dtype"] = args.dtype
        result = measure(name, model, options, batch, args.repeats, peak)
        print("  ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}" for key, value in result.items()), flush=True)
        tolerance = (1e-3 if args.model != "mini" else 1e-5) if args.dtype == "float32" else 5e-2
        if result["max |score difference|"] > tolerance:
            raise SystemExit(f"{name}: batched and per-pair scores differ by {result['max |score difference|']:.3g} (> {tolerance})")


if __name__ == "__main__":
    main()
