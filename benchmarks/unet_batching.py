"""Milliseconds per job of the mini Stable Diffusion UNet alone, at the batch vlbench runs it
(`unet_batch`, 64) against the 4 of upstream diffusion-itm's loop, and optionally compiled.

    python benchmarks/unet_batching.py [--repeats 5] [--jobs 256] [--compile]

A job is one (noisy latent, text, timestep) UNet pass, as the SD matchers make them on mini ComVG:
latents of mini ComVG images, the text encoder's states of their captions, the timesteps of
`diffusion-itm`'s 10-step grid (10, 110, …, 910). The batch sizes are timed alternately `--repeats` times over the same `--jobs` jobs; medians
and ranges are printed. `--compile` also times `torch.compile` of the UNet (the matchers'
`compile: true`): its first call (the compilation: tens of seconds the first time on a machine,
less once Inductor's cache in the temporary folder has it), its ms per job at 64 and the largest
difference of its outputs from the eager UNet's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch


def jobs(n_jobs: int):
    """`n_jobs` (noisy latent, timestep, text states) jobs from mini ComVG."""
    import vlbench
    from vlbench.evaluation import load_images

    matcher = vlbench.create_matcher("diffusion-itm", model="mini", feature_cache=False)
    examples = vlbench.create_task("mini-comvg").examples(seed=0)
    images = [image for example in examples[: -(-n_jobs // 2)] for image in load_images(example)][:n_jobs]
    texts = [text for example in examples[: -(-n_jobs // 2)] for text in example.texts] * 2
    with torch.inference_mode():
        latents = matcher.latents(images, "mean")[:, 0]
        states = matcher.inputs.text_states(texts[:n_jobs])
        timesteps = torch.tensor([10 + 100 * (index % 10) for index in range(n_jobs)])
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
        noisy = matcher.sd.scheduler.add_noise(latents, noise, timesteps)
    return matcher.sd.unet, noisy, timesteps, states


def seconds(unet, noisy, timesteps, states, batch: int) -> float:
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(noisy), batch):
            part = slice(start, start + batch)
            unet(noisy[part], timesteps[part], encoder_hidden_states=states[part])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=256)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the UNet")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    with tempfile.TemporaryDirectory() as directory:
        os.environ["VLBENCH_CACHE"] = directory  # the mini-world is generated here
        unet, noisy, timesteps, states = jobs(args.jobs)
        paths = {"batch 4 (upstream's loop)": (unet, 4), "batch 64 (vlbench's unet_batch)": (unet, 64)}
        if args.compile:
            compiled = torch.compile(unet)
            started = time.perf_counter()
            with torch.inference_mode():
                first = compiled(noisy[:64], timesteps[:64], encoder_hidden_states=states[:64]).sample
                compiling = time.perf_counter() - started
                eager = unet(noisy[:64], timesteps[:64], encoder_hidden_states=states[:64]).sample
            print(f"torch.compile: first call {compiling:.1f} s; outputs differ from the eager UNet's by at most {(first - eager).abs().max().item():.1e}")
            paths["batch 64, compiled"] = (compiled, 64)
        times: dict[str, list[float]] = {name: [] for name in paths}
        seconds(unet, noisy, timesteps, states, 64)  # warm-up
        for _ in range(args.repeats):
            for name, (model, batch) in paths.items():
                times[name].append(seconds(model, noisy, timesteps, states, batch))
    print(f"mini SD UNet, {args.jobs} mini ComVG jobs, torch threads {torch.get_num_threads()}, {args.repeats} interleaved repeats")
    baseline = statistics.median(next(iter(times.values())))
    for name, measured in times.items():
        print(f"{name:32s} {1000 * statistics.median(measured) / args.jobs:6.2f} ms a job (median; range {1000 * min(measured) / args.jobs:.2f}–{1000 * max(measured) / args.jobs:.2f})   ratio to batch 4 {baseline / statistics.median(measured):.2f}x")


if __name__ == "__main__":
    main()
