"""Peak memory of one `dsd` training step at batch 1 and batch 8, with the training loop's
per-example backward against the old loop that stacked every example's loss before one backward
(the baseline, measured in the same run), on the Stable Diffusion 2.1-base-shaped UNet at reduced
resolution. Exits 1 if batch 8 needs more than 1.3× batch 1's memory for the step.

    python benchmarks/training_memory.py                       # 128 px (16×16 latents), 4 noise levels
    python benchmarks/training_memory.py --checkpointing       # also with UNet gradient checkpointing

Each configuration runs in a fresh process. What a step needs is its peak above the memory held
before it (the model with every weight paged in by one scoring pass, the prompts): on CUDA
`max_memory_allocated`, on the CPU the resident set's high-water mark (`VmHWM`, reset through
/proc/self/clear_refs before the step).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

LIMIT = 1.3


def _resident_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def one_step(model: str, batch: int, loop: str, checkpointing: bool, noise_levels: list[float]) -> dict:
    """One training step of `batch` mini ComVG examples; the step's peak memory above its start, in MiB."""
    import torch

    import vlbench
    from vlbench.evaluation import load_images
    from vlbench.losses import example_loss
    from vlbench.tasks.miniworld.tasks import MiniComVGOptions, MiniComVGTask
    from vlbench.training import TrainConfig, fit_by_scores, make_optimizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    matcher = vlbench.create_matcher("dsd", model=model, device=device, feature_cache=False, noise_levels=noise_levels, gradient_checkpointing=checkpointing)
    examples = MiniComVGTask(MiniComVGOptions(), None).examples(seed=0)[:batch]
    loaded = {example.id: load_images(example) for example in examples}
    matcher.trained_module()
    with torch.no_grad():  # outside the measured step: the VAE and text encoder, and one UNet pass
        for example in examples:  # that pages in every weight (safetensors are memory-mapped)
            matcher.inputs.latents(loaded[example.id], "mean")
            matcher.inputs.text_states(list(example.texts))
        matcher.score(loaded[examples[0].id], examples[0].texts)
    matcher.training_noise = torch.Generator().manual_seed(0)
    train = TrainConfig(epochs=1, batch_size=batch)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
        before = _resident_kib("VmRSS") * 1024
    with matcher.training_capture():
        if loop == "per-example":
            fit_by_scores(matcher, examples, train, lambda example: loaded[example.id])
        else:  # the old loop's step: every example's graph held until one backward, then the same update
            parameters = matcher.trainable_parameters()
            optimizer = make_optimizer(parameters, train)
            losses = [example_loss(matcher.score(loaded[e.id], e.texts), e.positives, train.loss) for e in examples]
            (torch.stack(losses).sum() / len(examples)).backward()
            torch.nn.utils.clip_grad_norm_(parameters, train.grad_clip)
            optimizer.step()
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else _resident_kib("VmHWM") * 1024
    return {"device": device, "step_peak_mib": (peak - before) / 2**20, "held_before_mib": before / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sd21-random", help="sd21-random (SD-2.1-base shapes, random weights) or a Stable Diffusion folder")
    parser.add_argument("--sample-size", type=int, default=16, help="latent side of sd21-random (16: 128-pixel images)")
    parser.add_argument("--noise-levels", type=float, nargs="+", default=[0.2, 0.4, 0.6, 0.8])
    parser.add_argument("--checkpointing", action="store_true", help="also measure with UNet gradient checkpointing")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a JSON configuration to measure in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_step(**json.loads(args.one))))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from sd21 import sd21_random

    model = str(sd21_random(args.sample_size)) if args.model == "sd21-random" else args.model
    loops = [("per-example", False), ("stacked (old loop)", False)] + ([("per-example", True)] if args.checkpointing else [])
    peaks: dict[tuple[str, bool], dict[int, float]] = {}
    for loop, checkpointing in loops:
        for batch in (1, 8):
            configuration = {"model": model, "batch": batch, "loop": loop.split()[0], "checkpointing": checkpointing, "noise_levels": args.noise_levels}
            done = subprocess.run([sys.executable, __file__, "--one", json.dumps(configuration)], capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            peaks.setdefault((loop, checkpointing), {})[batch] = result["step_peak_mib"]
            print(f"{loop:<20} checkpointing {str(checkpointing):<5} batch {batch}: step peak {result['step_peak_mib']:8.1f} MiB above {result['held_before_mib']:.0f} MiB held ({result['device']})", flush=True)
    print()
    for (loop, checkpointing), by_batch in peaks.items():
        print(f"{loop:<20} checkpointing {str(checkpointing):<5} batch 8 / batch 1: {by_batch[8] / by_batch[1]:.2f}")
    ratio = peaks[("per-example", False)][8] / peaks[("per-example", False)][1]
    if ratio > LIMIT:
        raise SystemExit(f"batch 8 needs {ratio:.2f}× batch 1's step memory (limit {LIMIT})")


if __name__ == "__main__":
    main()
