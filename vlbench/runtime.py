"""Where and how a matcher runs: device, seed, model."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

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
    """The device as a run records it: what decides its float32 rounding (`feature_cache.device_identity`),
    on the CPU (and Apple's `mps`, named as such) with the processor's name and the thread count,
    which change a trained run's scores."""
    from vlbench.feature_cache import device_identity

    return describe_identity(device_identity(device))


def describe_identity(identity: dict) -> str:
    """`describe_device` of a `feature_cache.device_identity`."""
    if identity["device"] == "cuda":
        major, minor = identity["capability"]
        return f"{identity['gpu']} (compute {major}.{minor}, CUDA {identity['cuda']}, cuDNN {identity['cudnn']}, TF32 {'on' if any(identity['tf32']) else 'off'})"
    name, threads = identity["cpu"], identity["threads"]
    return f"{identity['device']} ({name + ', ' if name else ''}{identity['machine']} {identity['cpu_capability']}, {threads} thread{'s' if threads != 1 else ''})"


@cache
def cpu_name() -> str:
    """The processor's model name, where the system says it ('' elsewhere); read once per process."""
    import platform
    import subprocess
    from pathlib import Path

    try:
        if platform.system() == "Darwin":
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5).stdout.strip()
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return ""
