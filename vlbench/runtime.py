"""Where and how a matcher runs: device, seed, batch size, model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vlbench.errors import VlbenchError


@dataclass(frozen=True)
class Runtime:
    """Handed to every matcher. `model` is the `--model` value (a hub id, a path, or "mini");
    `task` names the task being run (matchers with per-task defaults read it); `save_attention`
    asks matchers with `records_attention` to keep the maps behind their scores."""

    device: str
    seed: int
    batch_size: int
    model: str | None
    run_dir: Path | None
    task: str | None = None
    save_attention: bool = False


def resolve_device(requested: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` without one is an error."""
    import torch

    available = torch.cuda.is_available()
    if requested == "auto":
        return "cuda" if available else "cpu"
    if requested == "cuda" and not available:
        raise VlbenchError("--device cuda: no CUDA device is visible to PyTorch; use --device cpu or auto")
    return requested


def describe_device(device: str) -> str:
    import platform

    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
