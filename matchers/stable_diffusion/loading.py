"""Loading a Stable Diffusion checkpoint's components, the way the diffusers folder layout defines,
with a content hash of the files loaded (part of every run's identity and of the feature cache's key).

`--model` is `mini` (the mini SD shipped with vlbench), a local folder in the diffusers layout
(`unet/`, `vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`; `model_index.json` is not read) or a hub id
(default `stabilityai/stable-diffusion-2-1-base`, from the local hub cache when offline).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlbench.errors import VlbenchError
from vlbench.hashing import files_sha256
from vlbench.matchers.mini_models import mini_model_dir
from vlbench.readers import read_json

DEFAULT_MODEL = "stabilityai/stable-diffusion-2-1-base"


@dataclass
class StableDiffusionParts:
    tokenizer: Any
    text_encoder: Any
    vae: Any
    unet: Any
    scheduler: Any
    fingerprint: dict[str, Any]


def load_stable_diffusion(model: str | None, device: str) -> StableDiffusionParts:
    """The five components, frozen, in eval mode, on `device`."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    spec = model or DEFAULT_MODEL
    try:
        folder = model_folder(spec)
        with _quiet_loading():
            tokenizer = CLIPTokenizer.from_pretrained(str(folder), subfolder="tokenizer")
            text_encoder = CLIPTextModel.from_pretrained(str(folder), subfolder="text_encoder")
            vae = AutoencoderKL.from_pretrained(str(folder), subfolder="vae")
            unet = UNet2DConditionModel.from_pretrained(str(folder), subfolder="unet")
            scheduler = DDPMScheduler.from_pretrained(str(folder), subfolder="scheduler")
    except Exception as error:  # hub and file errors come in many types
        cause = f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        if Path(spec).is_dir():
            raise VlbenchError(f"--model {spec}: cannot load this folder as a diffusers Stable Diffusion checkpoint {cause}; it needs unet/, vae/, text_encoder/, tokenizer/ and scheduler/") from None
        raise VlbenchError(
            f"--model {spec}: cannot load a Stable Diffusion checkpoint {cause}. "
            f"Offline, download it on a machine with internet (`{download_command(spec if spec != 'mini' else DEFAULT_MODEL)} --local-dir DIR`), "
            "copy DIR here and pass --model DIR; `--model mini` needs nothing."
        ) from None
    for part in (text_encoder, vae, unet):
        part.requires_grad_(False)
        part.eval()
        part.to(device)
    # diffusers' `_name_or_path` (where it was loaded from) and `_diffusers_version` are no part of
    # the model: the same files elsewhere, or saved by another diffusers, are the same checkpoint
    unet_config = {key: value for key, value in unet.config.items() if not key.startswith("_")}
    fingerprint = {"model": spec, "weights_sha256": files_sha256(checkpoint_files(folder), folder), "unet_config": unet_config}
    return StableDiffusionParts(tokenizer, text_encoder, vae, unet, scheduler, fingerprint)


def missing_stable_diffusion(model: str | None) -> str | None:
    """Why `model` is not on this machine, with what to download; None if it is (no weights read)."""
    spec = model or DEFAULT_MODEL
    if spec == "mini":
        return None
    if Path(spec).is_dir():
        lacking = _lacking(Path(spec))
        return f"{spec} lacks {lacking} (a diffusers Stable Diffusion folder holds unet/, vae/, text_encoder/, tokenizer/ and scheduler/)" if lacking else None
    try:
        _hub_snapshot(spec)
    except Exception:  # not in the local hub cache, or not a hub id
        return f"{spec} is not in the local Hugging Face cache: on a machine with internet run `{download_command(spec)} --local-dir DIR`, copy DIR here and pass it as the model"
    return None


@contextmanager
def _quiet_loading():
    """No per-file progress bars from diffusers and transformers while loading (vlbench shows its own)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    shown = [library.is_progress_bar_enabled() for library in (diffusers_logging, transformers_logging)]
    for library in (diffusers_logging, transformers_logging):
        library.disable_progress_bar()
    try:
        yield
    finally:
        for library, enabled in zip((diffusers_logging, transformers_logging), shown):
            if enabled:
                library.enable_progress_bar()


COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin", "model.safetensors", "pytorch_model.bin")


def download_command(repo: str) -> str:
    """The huggingface_hub command (0.34 or later; `huggingface-cli download` before) that downloads
    what a load of hub model `repo` reads, safetensors weights one file or sharded (no single-file
    checkpoints, fp16 or EMA variants), without where to."""
    patterns = ("*/*.json", "*/*.txt", "*/diffusion_pytorch_model.safetensors", "*/diffusion_pytorch_model-*.safetensors", "text_encoder/model.safetensors", "text_encoder/model-*.safetensors")
    return f"hf download {repo} " + " ".join(f'--include "{pattern}"' for pattern in patterns)


def checkpoint_files(root: Path) -> list[Path]:
    """The files a load reads: each component's configs and tokenizer files, and the weights
    diffusers / transformers pick (safetensors before bin): one file, or the shards its
    `.index.json` maps the weights to. Not `model_index.json`, which loading a component at a time
    never reads: a full download has it and `_downloaded` does not, and both are the same weights."""
    files: list[Path] = []
    for component in COMPONENTS:
        folder = root / component
        if folder.is_dir():
            files += [path for path in folder.iterdir() if path.suffix in (".json", ".txt")]
            files += _component_weights(folder)
    return files


def _component_weights(folder: Path) -> list[Path]:
    """The weights a component folder loads from: the first of `WEIGHT_FILES` it has (one file, or
    the shards its index names, which may be missing); none if it has none."""
    return next((weights for name in WEIGHT_FILES if (weights := _weight_files(folder, name))), [])


def _weight_files(folder: Path, name: str) -> list[Path]:
    """`name` in `folder`, or the shards of its index (`name.index.json`); none if neither."""
    if (folder / name).exists():
        return [folder / name]
    index = folder / f"{name}.index.json"
    if not index.exists():
        return []
    return [folder / shard for shard in sorted(set(read_json(index).get("weight_map", {}).values()))]


def model_folder(spec: str) -> Path:
    """The folder a checkpoint loads from: the mini SD's, a local folder, or a hub model's snapshot
    in the local hub cache, downloaded first if it is not there. A cached model loads without the
    network (huggingface_hub would otherwise ask the hub about every file, retrying each for about
    25 s on a machine without internet)."""
    if spec == "mini":
        return mini_model_dir("mini-sd")
    if Path(spec).is_dir():
        return Path(spec)
    try:
        return _hub_snapshot(spec)
    except Exception:  # not in the local hub cache
        return _downloaded(spec)


def _hub_snapshot(repo: str) -> Path:
    """The local snapshot folder of a hub model in the hub cache, if it holds every file a load
    reads (a download cut off, or a cache filled with other weight variants, does not)."""
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download(repo, local_files_only=True))
    lacking = _lacking(folder)
    if lacking:
        raise FileNotFoundError(f"{folder} lacks {lacking}")
    return folder


def _lacking(folder: Path) -> str | None:
    """The first component part a load reads that `folder` lacks, or None."""
    for component, config in (("unet", "config.json"), ("vae", "config.json"), ("text_encoder", "config.json"), ("tokenizer", "tokenizer_config.json"), ("scheduler", "scheduler_config.json")):
        if not (folder / component / config).exists():
            return f"{component}/{config}"
        if component in ("unet", "vae", "text_encoder"):
            weights = _component_weights(folder / component)
            if not weights or not all(path.exists() for path in weights):
                return f"{component}'s weights"
    return None


def _downloaded(repo: str) -> Path:
    """Download what a load reads of hub model `repo` (as `checkpoint_files` picks it: each
    component's configs and tokenizer files and one weights format, not the fp16 or EMA variants)."""
    import re

    from huggingface_hub import list_repo_files, snapshot_download

    files = list_repo_files(repo)
    wanted = [name for name in files if name.split("/")[0] in COMPONENTS and name.endswith((".json", ".txt"))]
    for component in COMPONENTS:
        for weights in WEIGHT_FILES:
            stem, suffix = weights.rsplit(".", 1)
            chosen = [name for name in files if re.fullmatch(rf"{component}/{re.escape(stem)}(-\d+-of-\d+)?\.{suffix}", name)]
            if chosen:
                wanted += chosen
                break
    return Path(snapshot_download(repo, allow_patterns=wanted))
