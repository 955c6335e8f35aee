"""Where and how a matcher runs: device, seed, model."""

from __future__ import annotations

from dataclasses import dataclass

from vlbench.errors import VlbenchError


@dataclass(frozen=True)
class Runtime:
    """Handed to every matcher. `model` is the `--model` value (a hub id, a path, or "mini");
    `save_attention` asks matchers with `records_attention` to keep the maps behind their scores."""

    device: str = "cpu"
    seed: int = 0
    model: str | None = None
    save_attention: bool = False


def resolve_device(requested: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` or ``cuda:N`` without
    that GPU is an error."""
    import torch

    available = torch.cuda.is_available()
    if requested == "auto":
        return "cuda" if available else "cpu"
    if requested.startswith("cuda"):
        if not available:
            raise VlbenchError(f"--device {requested}: no CUDA device is visible to PyTorch; use --device cpu or auto")
        index = int(requested.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise VlbenchError(f"--device {requested}: PyTorch sees {torch.cuda.device_count()} CUDA device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return requested


def describe_device(device: str) -> str:
    """The device as a run records it. On the CPU: the processor, the instruction set PyTorch's
    kernels dispatch to and the thread count, which all change float32 rounding (and so a trained
    run's scores)."""
    import platform

    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    named = f"{cpu_name()}, " if cpu_name() else ""
    return f"cpu ({named}{platform.machine()} {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads)"


def cpu_name() -> str:
    """The processor's model name ('' where the system does not say)."""
    import platform
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor()
