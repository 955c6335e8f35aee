"""The GPUs that a suite's parallel job processes share out, one to each job, the least busy first."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

GPU_DEVICES = ("auto", "cuda")  # the `--device` values a job process resolves to its first visible GPU


def visible_gpus() -> list[str]:
    """The GPUs a job process may be given, as `CUDA_VISIBLE_DEVICES` names them: the user's list
    where it is set (as far as PyTorch sees it: CUDA stops at the first entry it cannot use), else
    `0` to the last GPU PyTorch sees; none on a machine without one."""
    import torch

    count = torch.cuda.device_count()
    named = os.environ.get("CUDA_VISIBLE_DEVICES")
    return [gpu.strip() for gpu in named.split(",")][:count] if named is not None else [str(index) for index in range(count)]


class GpuShares:
    """Each job process that would take the first visible GPU (`--device` auto or cuda) is given
    one GPU through `CUDA_VISIBLE_DEVICES`, the one running the fewest jobs (the first such in
    `gpus`), so N jobs at a time spread over the GPUs instead of all landing on the first (a GPU is
    shared only when more jobs run at once than there are GPUs). Jobs on the CPU or naming a
    `cuda:N` keep the suite's environment."""

    def __init__(self, gpus: list[str]) -> None:
        self.running = dict.fromkeys(gpus, 0)
        self.lock = threading.Lock()

    @contextmanager
    def environment(self, device: str, environment: dict[str, str]) -> Iterator[dict[str, str]]:
        """The environment of a job process on `device`, while it runs."""
        if not self.running or device not in GPU_DEVICES:
            yield environment
            return
        with self.lock:
            gpu = min(self.running, key=self.running.__getitem__)
            self.running[gpu] += 1
        try:
            yield {**environment, "CUDA_VISIBLE_DEVICES": gpu}
        finally:
            with self.lock:
                self.running[gpu] -= 1
