"""Training checkpoints: an interrupted training resumes from the last epoch it checkpointed and
ends with the state an uninterrupted training ends with (trained tensors, optimiser, the epoch
order's shuffle and every random stream training draws from)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlbench.errors import VlbenchError
from vlbench.options import as_dict

if TYPE_CHECKING:
    from vlbench.training import TrainConfig
    from vlbench.types import Example, Matcher

CHECKPOINT_SECONDS = 60.0  # at an epoch's end, a checkpoint is written once this long has passed since the last
FORMAT = 3  # 2: the run and split it belongs to ("owner"); 3: the device by what decides its rounding
RESTART = "; --restart to train from the start"


@dataclass
class Position:
    """Where training stands at the end of an epoch."""

    epochs_done: int
    step: int
    order: list[int]  # the training examples' positions, as the last epoch shuffled them
    shuffle: random.Random


@dataclass
class TrainingCheckpoint:
    """The checkpoint file of one run's training, written by rank 0 (every rank's random streams in it)."""

    path: Path
    owner: str  # `RunDirectory.state_owner()`: a checkpoint copied from another run or split is refused
    epochs_kept: int = 0
    epochs_restored: int = 0  # epochs_kept when training resumed from the file
    last_written: float = field(default_factory=time.monotonic)

    def restore(self, matcher: Matcher, optimizer: Any, examples: Sequence[Example], train: TrainConfig) -> Position | None:
        """Load the checkpoint into `matcher`, `optimizer` and the random streams; None when there is none."""
        import torch

        from vlbench import distributed

        ranks = distributed.current()
        state = ranks.from_main(torch.load(self.path, map_location="cpu", weights_only=True) if ranks.is_main and self.path.exists() else None)
        if state is None:
            return None
        _check_matches(state, self.path, self.owner, examples, train, ranks.world_size)
        mismatch = next(filter(None, ranks.gather(_compute_mismatch(state["random"][ranks.rank]["compute"], _compute(matcher)))), None)
        if mismatch:
            raise VlbenchError(f"{self.path}: {mismatch}")
        matcher.load_state_dict(state["trained"])
        optimizer.load_state_dict(state["optimizer"])
        _set_random_state(matcher, state["random"][ranks.rank])
        shuffle = random.Random()
        shuffle.setstate((state["shuffle"]["version"], tuple(state["shuffle"]["internal"]), state["shuffle"]["gauss"]))
        self.epochs_kept = self.epochs_restored = state["epochs_done"]
        return Position(state["epochs_done"], state["step"], list(state["order"]), shuffle)

    def save_if_due(self, matcher: Matcher, optimizer: Any, examples: Sequence[Example], train: TrainConfig, position: Position) -> None:
        """At an epoch's end: write the checkpoint if `CHECKPOINT_SECONDS` have passed since the last
        (rank 0's clock decides for every rank); the last epoch needs none (its state is stored next)."""
        from vlbench import distributed

        ranks = distributed.current()
        due = ranks.from_main(time.monotonic() - self.last_written >= CHECKPOINT_SECONDS)
        if not due or position.epochs_done == train.epochs:
            return
        randoms = ranks.gather(_random_state(matcher))
        version, internal, gauss = position.shuffle.getstate()
        state = {
            "format": FORMAT,
            "owner": self.owner,
            "examples": [example.id for example in examples],
            "train": as_dict(train),
            "world_size": ranks.world_size,
            "epochs_done": position.epochs_done,
            "step": position.step,
            "order": position.order,
            "shuffle": {"version": version, "internal": list(internal), "gauss": gauss},
            "trained": matcher.state_dict(),
            "optimizer": optimizer.state_dict(),
            "random": randoms,
        }
        ranks.on_main(lambda: _write(self.path, state))
        self.epochs_kept = position.epochs_done
        self.last_written = time.monotonic()

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


_current: ContextVar[TrainingCheckpoint | None] = ContextVar("training_checkpoint", default=None)


@contextmanager
def checkpointing(checkpoint: TrainingCheckpoint) -> Iterator[TrainingCheckpoint]:
    """`fit_by_scores` called inside restores from and writes to `checkpoint`."""
    token = _current.set(checkpoint)
    try:
        yield checkpoint
    finally:
        _current.reset(token)


def current() -> TrainingCheckpoint | None:
    return _current.get()


def _random_state(matcher: Matcher) -> dict[str, Any]:
    import torch

    return {
        "compute": _compute(matcher),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "generators": [generator.get_state() for generator in matcher.training_generators()],
    }


def _set_random_state(matcher: Matcher, state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    generators = matcher.training_generators()
    if len(generators) != len(state["generators"]):
        raise VlbenchError(f"the training checkpoint holds {len(state['generators'])} random streams, matcher '{matcher.name}' draws from {len(generators)}{RESTART}")
    for generator, generator_state in zip(generators, state["generators"]):
        generator.set_state(generator_state)


def _compute(matcher: Matcher) -> dict[str, Any]:
    """What a training's floats depend on besides its inputs: the device, as what decides its
    rounding (`feature_cache.device_identity`: a GPU's model and CUDA versions, not whether it is
    named `cuda` or `cuda:0`), and PyTorch's thread count."""
    import torch

    from vlbench.feature_cache import device_identity

    hardware = {key: value for key, value in device_identity(str(matcher.runtime.device)).items() if key != "threads"}
    return {"device": hardware, "threads": torch.get_num_threads()}


def _compute_mismatch(stored: dict[str, Any], now: dict[str, Any]) -> str | None:
    """Why a training checkpointed on `stored` compute cannot go on on `now` (it would not end as
    an uninterrupted training ends), with what to do; None when it can."""
    if stored == now:
        return None
    from vlbench.runtime import describe_identity

    fix = f"resume it with OMP_NUM_THREADS={stored['threads']} (`vlbench suite run --jobs N` sets it to the cores over N), or " if stored["device"] == now["device"] else ""
    stored_on, now_on = (describe_identity({**compute["device"], "threads": compute["threads"]}) + (f" with {compute['threads']} CPU threads" if compute["device"]["device"] == "cuda" else "") for compute in (stored, now))
    return f"a training checkpoint written on {stored_on} cannot resume on {now_on} (it would not end as one uninterrupted training); {fix}delete it (or --restart) to train from the start"


def _check_matches(state: dict[str, Any], path: Path, owner: str, examples: Sequence[Example], train: TrainConfig, world_size: int) -> None:
    """A checkpoint resumes only the training that wrote it."""
    if state.get("format") != FORMAT:
        raise VlbenchError(f"{path}: a training checkpoint of another format ({state.get('format')}, this vlbench writes {FORMAT}){RESTART}")
    if state["owner"] != owner:
        raise VlbenchError(f"{path}: a training checkpoint written for another run or split (copied from another run directory?){RESTART}")
    if state["world_size"] != world_size:
        raise VlbenchError(f"{path}: a training checkpoint written by {state['world_size']} processes cannot resume in {world_size} (each draws its own noise); run with {state['world_size']}{RESTART}")
    if state["examples"] != [example.id for example in examples] or state["train"] != as_dict(train):
        raise VlbenchError(f"{path}: a training checkpoint of other training examples or options{RESTART}")


def _write(path: Path, state: dict[str, Any]) -> None:
    import torch

    from vlbench.records import write_atomically

    try:
        write_atomically(path, lambda handle: torch.save(state, handle))
    except OSError as error:  # as a VlbenchError it reaches every rank (`Ranks.on_main`)
        raise VlbenchError(f"{path}: the training checkpoint cannot be written ({error.strerror})") from None
