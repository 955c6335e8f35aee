"""The run configuration: a YAML file and CLI flags, merged and validated once.

Precedence: CLI flag, then the YAML file, then the defaults below. The data root comes from
`--data-root`, then the `VLBENCH_DATA` environment variable, then the YAML file.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from vlbench.errors import VlbenchError
from vlbench.options import build

SPLIT_PROTOCOLS = ("grouped", "paper-release")


@dataclass(frozen=True)
class Shots:
    """How many few-shot training examples: a fraction of the train pool, or a count."""

    fraction: float | None = None
    count: int | None = None

    @classmethod
    def parse(cls, text: str | int | float) -> Shots:
        """``"0.05"`` or ``"5%"`` → a fraction; ``"16"`` → a count; ``"0"`` → zero-shot."""
        raw = str(text).strip()
        try:
            if raw.endswith("%"):
                fraction = float(raw[:-1]) / 100
            elif "." in raw or "e" in raw.lower():
                fraction = float(raw)
            else:
                count = int(raw)
                if count < 0:
                    raise VlbenchError(f"--shots {raw}: a count of shots cannot be negative")
                return cls(count=count)
        except ValueError:
            raise VlbenchError(f"--shots {raw!r}: give a fraction (0.05 or 5%) or a count (16)") from None
        if not 0 <= fraction < 1:
            raise VlbenchError(f"--shots {raw}: a fraction must be at least 0 and below 1 (got {fraction:g})")
        named = float(Decimal(f"{fraction * 100:g}") / 100)  # the fraction the run's name (`label`) gives, as 0.014 reads
        if not math.isclose(named, fraction, rel_tol=1e-12):
            raise VlbenchError(f"--shots {raw}: give a fraction of at most 6 significant digits, as runs are named by them (e.g. {named * 100:g}%)")
        return cls(fraction=named)

    @property
    def is_zero(self) -> bool:
        return not self.fraction and not self.count

    def label(self) -> str:
        """A stable, readable name: ``0``, ``16`` or ``5%``."""
        if self.fraction:
            return f"{self.fraction * 100:g}%"
        return str(self.count or 0)

    def size(self, pool: int) -> int:
        """The number of training examples drawn from a pool of `pool`."""
        if self.fraction:
            return max(1, round(self.fraction * pool))
        return self.count or 0


def default_image_workers() -> int:
    """Image loading threads: one core fewer than this process may use, at most 4, at least 1. On a
    machine with few cores, more threads only take the scoring thread's turns
    (`benchmarks/harness_floor.py --image-workers N`)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2
    return max(1, min(4, cores - 1))


@dataclass
class RunConfig:
    """Everything that defines a run (one per seed); see the README for each key."""

    task: str
    matcher: str
    model: str | None = None
    data_root: str | None = None
    shots: str = "0"
    seeds: list[int] = field(default_factory=lambda: [0])
    split: Literal["grouped", "paper-release"] = "grouped"
    limit: int | None = None
    batch_size: int = 16
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    on_bad_example: Literal["error", "skip"] = "error"
    image_workers: int = field(default_factory=default_image_workers)
    thumbnails: bool = True
    save_attention: bool = False
    restart: bool = False
    runs_dir: str = "runs"
    task_options: dict[str, Any] = field(default_factory=dict)
    matcher_options: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.shots_parsed = Shots.parse(self.shots)
        if self.limit is not None and self.limit < 1:
            raise VlbenchError(f"--limit {self.limit}: give at least 1 example, or leave it out for all")
        if self.batch_size < 1:
            raise VlbenchError(f"--batch-size {self.batch_size}: must be at least 1")
        if self.image_workers < 1:
            raise VlbenchError(f"image_workers {self.image_workers}: must be at least 1")
        if not self.seeds:
            raise VlbenchError("no seeds given: pass --seed at least once")
        if len(set(self.seeds)) != len(self.seeds):
            raise VlbenchError(f"seeds {self.seeds}: each seed once")
        if any(not isinstance(seed, int) or isinstance(seed, bool) or seed < 0 for seed in self.seeds):
            raise VlbenchError(f"seeds {self.seeds}: each seed is a whole number, 0 or more")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise VlbenchError(f"--device {self.device}: choose auto, cpu, cuda or cuda:N")


def load_run_config(config_file: Path | None, overrides: dict[str, Any], flags: bool = False) -> RunConfig:
    """Merge the YAML file (if any) with `overrides` (None values are not given); with `flags`,
    the overrides came from command-line flags, and an error in one names the flag."""
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(read_yaml(config_file))
    for key, value in overrides.items():
        if value is not None and value != []:
            values[key] = value
    values["data_root"] = resolve_data_root(overrides.get("data_root"), values.get("data_root"))
    for required in ("task", "matcher"):
        if not values.get(required):
            raise VlbenchError(f"no {required} given: pass --{required} or set '{required}:' in --config")
    where = str(config_file) if config_file else "run options"
    try:
        return build(RunConfig, values, where)
    except VlbenchError as error:
        for key, value in overrides.items() if flags else ():
            if value is not None and str(error).startswith(f"{where}.{key}: "):
                flag = "--seed" if key == "seeds" else f"--{key.replace('_', '-')}"
                raise VlbenchError(f"{flag} {value}: {str(error).removeprefix(f'{where}.{key}: ')}") from None
        raise


def resolve_data_root(flag: str | None, from_config: str | None) -> str | None:
    """`--data-root`, then the `VLBENCH_DATA` environment variable, then the config file."""
    return flag or os.environ.get("VLBENCH_DATA") or from_config


def cache_dir() -> Path:
    """Where vlbench keeps what it can regenerate (mini-world data, features): `VLBENCH_CACHE`,
    default `~/.cache/vlbench`."""
    return Path(os.environ.get("VLBENCH_CACHE") or Path.home() / ".cache" / "vlbench")


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from `path`, with file and line in any error."""
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as error:
        raise VlbenchError(f"cannot read config file {path}: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}" if mark else str(path)
        raise VlbenchError(f"{where}: not valid YAML ({getattr(error, 'problem', error)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VlbenchError(f"{path}: expected a mapping of keys to values at the top level")
    return data
