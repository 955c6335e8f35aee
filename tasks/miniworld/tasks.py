"""Mini-world tasks: the real tasks, reading data the generator writes into a cache directory.

The data is generated on first use for each (world_seed, image_size) and reused after that;
`VLBENCH_CACHE` moves the cache (default `~/.cache/vlbench`). `--data-root` is not used.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from vlbench.config import cache_dir
from vlbench.tasks.comvg import ComVGOptions, ComVGTask
from vlbench.tasks.miniworld.writers import GENERATOR_VERSION, write_all
from vlbench.tasks.refcocog import RefCOCOgOptions, RefCOCOgTask
from vlbench.tasks.vqav2 import VQAv2Options, VQAv2Task
from vlbench.tasks.winoground import WinogroundOptions, WinogroundTask


def generated_root(world_seed: int, image_size: int) -> Path:
    """The mini-world for this seed and image size, generated now if it is not cached yet."""
    root = cache_dir() / "miniworld" / f"v{GENERATOR_VERSION}-seed{world_seed}-px{image_size}"
    if (root / "miniworld.json").exists():
        return root
    staging = root.with_name(f"{root.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    write_all(staging, world_seed, image_size)
    try:
        os.replace(staging, root)  # atomic: readers see the whole world or none of it
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return root


class GeneratedData:
    """Mixin: the data root is the generated mini-world's `subfolder`."""

    subfolder: ClassVar[str]

    def require_data_root(self) -> Path:
        return generated_root(self.options.world_seed, self.options.image_size) / self.subfolder


@dataclass
class MiniComVGOptions(ComVGOptions):
    world_seed: int = 0
    image_size: int = 32


@dataclass
class MiniRefCOCOgOptions(RefCOCOgOptions):
    world_seed: int = 0
    image_size: int = 32


@dataclass
class MiniVQAv2Options(VQAv2Options):
    source: str = "official"
    world_seed: int = 0
    image_size: int = 32


@dataclass
class MiniWinogroundOptions(WinogroundOptions):
    world_seed: int = 0
    image_size: int = 32


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
