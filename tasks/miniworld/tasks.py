"""Mini-world tasks: the real tasks, reading data the generator writes into a cache directory.

The data is generated on first use for each (world_seed, image_size) and generator code, and reused after that;
`VLBENCH_CACHE` moves the cache (default `~/.cache/vlbench`). `--data-root` is not used.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from vlbench.config import cache_dir
from vlbench.errors import VlbenchError
from vlbench.hashing import source_sha256
from vlbench.options import check
from vlbench.tasks.comvg import ComVGOptions, ComVGTask
from vlbench.tasks.miniworld import scenes, writers
from vlbench.tasks.miniworld.writers import GENERATOR_VERSION, write_all
from vlbench.tasks.refcocog import RefCOCOgOptions, RefCOCOgTask
from vlbench.tasks.vqav2 import VQAv2Options, VQAv2Task
from vlbench.tasks.winoground import WinogroundOptions, WinogroundTask


def generated_root(world_seed: int, image_size: int) -> Path:
    """The mini-world for this seed and image size, generated now if it is not cached yet by this
    generator: its code is part of the cache key, so an edited generator writes a new world instead
    of reading the old one."""
    code = source_sha256(writers, scenes)[:12]
    root = cache_dir() / "miniworld" / f"v{GENERATOR_VERSION}-{code}-seed{world_seed}-px{image_size}"
    if (root / "miniworld.json").exists():
        return root
    staging = root.with_name(f"{root.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        write_all(staging, world_seed, image_size)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise VlbenchError(
            f"the mini-world is generated into $VLBENCH_CACHE on first use, but {error.filename} cannot be written ({error.strerror}); "
            "set VLBENCH_CACHE to a writable directory"
        ) from None
    except BaseException:  # Ctrl-C or SIGTERM: no half-written world left behind either
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        os.replace(staging, root)  # atomic: readers see the whole world or none of it
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return root


@dataclass
class WorldOptions:
    """Which mini-world: its seed and picture size."""

    world_seed: int = 0
    image_size: int = 32

    def __post_init__(self) -> None:
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()
        check(self.image_size >= 24, "image_size", f"must be at least 24 pixels (scenes need the room), got {self.image_size}")


class GeneratedData:
    """Mixin: the data root is the generated mini-world's `subfolder`."""

    subfolder: ClassVar[str]
    reads_data_root = False

    def require_data_root(self) -> Path:
        return generated_root(self.options.world_seed, self.options.image_size) / self.subfolder


@dataclass
class MiniComVGOptions(WorldOptions, ComVGOptions):
    pass


@dataclass
class MiniRefCOCOgOptions(WorldOptions, RefCOCOgOptions):
    pass


@dataclass
class MiniVQAv2Options(WorldOptions, VQAv2Options):
    source: Literal["csv", "official"] = "official"


@dataclass
class MiniWinogroundOptions(WorldOptions, WinogroundOptions):
    pass


class MiniComVGTask(GeneratedData, ComVGTask):
    name = "mini-comvg"
    version = f"{ComVGTask.version}-mini{GENERATOR_VERSION}"
    summary = "Mini-world ComVG (generated offline): sentence vs subject/object/relation-swapped image."
    subfolder = "comvg"
    Options = MiniComVGOptions


class MiniRefCOCOgTask(GeneratedData, RefCOCOgTask):
    name = "mini-refcocog"
    version = f"{RefCOCOgTask.version}-mini{GENERATOR_VERSION}"
    summary = "Mini-world RefCOCOg (generated offline): referring expressions among 10 candidates."
    subfolder = "refcocog"
    Options = MiniRefCOCOgOptions


class MiniVQAv2Task(GeneratedData, VQAv2Task):
    name = "mini-vqav2"
    version = f"{VQAv2Task.version}-mini{GENERATOR_VERSION}"
    summary = "Mini-world VQAv2 (generated offline): colour, shape, count and yes/no questions."
    subfolder = "vqav2"
    Options = MiniVQAv2Options


class MiniWinogroundTask(GeneratedData, WinogroundTask):
    name = "mini-winoground"
    version = f"{WinogroundTask.version}-mini{GENERATOR_VERSION}"
    summary = "Mini-world Winoground (generated offline): same words, different order, two images."
    subfolder = "winoground"
    Options = MiniWinogroundOptions
