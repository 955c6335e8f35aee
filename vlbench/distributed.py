"""Multi-process runs under `torchrun` or `accelerate launch`.

Both launchers set `RANK`, `LOCAL_RANK` and `WORLD_SIZE` (and the rendezvous address); `join()`
turns them into a process group (gloo on the CPU, NCCL on CUDA). Without them a run is one process
and every collective here is a no-op, so the single-process path runs the same code.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from vlbench.errors import VlbenchError, first_line

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True)
class Ranks:
    """This process's place among the processes of a run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, items: Sequence[Item]) -> list[Item]:
        """This rank's share of `items`: every `world_size`-th item from `rank`, none padded or repeated."""
        return list(items[self.rank :: self.world_size])

    def from_main(self, value: Any) -> Any:
        """Rank 0's `value`, on every rank."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        box = [value]
        with _peers_present():
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, action: Callable[[], Result]) -> Result:
        """Run `action` on rank 0 only; its result, or the `VlbenchError` it raised, reaches every rank."""
        outcome: tuple[Any, str | None] = (None, None)
        if self.is_main:
            try:
                outcome = (action(), None)
            except VlbenchError as error:
                outcome = (None, str(error))
        result, error = self.from_main(outcome)
        if error is not None:
            raise VlbenchError(error)
        return result

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order, on every rank."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        values: list[Any] = [None] * self.world_size
        with _peers_present():
            dist.all_gather_object(values, value)
        return values

    def sum_gradients(self, parameters: Sequence[Any]) -> None:
        """Sum each parameter's gradient over the ranks (a rank with no examples contributes zeros)."""
        if not self.distributed:
            return
        import torch
        import torch.distributed as dist

        for parameter in parameters:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            with _peers_present():
                dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)


@contextmanager
def _peers_present() -> Iterator[None]:
    """A collective that fails (another process of the run stopped, whose own error says why, or
    the backend timed out) ends this process with one line instead of the backend's traceback."""
    try:
        yield
    except RuntimeError as error:
        raise VlbenchError(
            f"a collective operation with the other processes of this run failed: another process stopped (its own error says why) or it timed out "
            f"({type(error).__name__}: {first_line(error)}); what the run stored is kept: run the same command to resume"
        ) from error


def current() -> Ranks:
    """The ranks of this process: from the initialised process group, else a single process."""
    if not launched():
        return Ranks()
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return Ranks()


def launched() -> bool:
    """Whether a launcher started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(device: str) -> Ranks:
    """Join the launcher's process group (once per process) and return this process's ranks.

    `device` is the resolved device; on CUDA each process takes the GPU of its local rank."""
    if not launched():
        return Ranks()
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        missing = [name for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
        if missing:
            raise VlbenchError(f"WORLD_SIZE is set but {', '.join(missing)} is not: start multi-process runs with torchrun or accelerate launch")
        if device.startswith("cuda"):
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return current()


def leave() -> None:
    """Leave the process group, if this process joined one, once every rank has come here.

    Call it after a run that ended well on every rank. The barrier keeps ranks from tearing the
    group down at different times: rank 0 still prints results while the others would already
    be exiting, and gloo can then abort a process at exit after its work is done."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def rank_device(device: str, ranks: Ranks) -> str:
    """`cuda` becomes this rank's GPU, `cuda:<local rank>`; other devices (`cuda:N` named by the
    user included) are unchanged."""
    return f"cuda:{ranks.local_rank}" if device == "cuda" and ranks.distributed else device
