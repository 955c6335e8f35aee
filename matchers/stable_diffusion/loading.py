"""Loading a Stable Diffusion checkpoint's components, the way the diffusers folder layout defines,
with a content hash of the files loaded (part of every run's identity and of the feature cache's key).

`--model` is `mini` (the mini SD shipped with vlbench), a local folder in the diffusers layout
(`model_index.json`, `unet/`, `vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`) or a hub id
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
    root = str(mini_model_dir("mini-sd")) if spec == "mini" else spec
    try:
        with _quiet_loading():
            tokenizer = CLIPTokenizer.from_pretrained(root, subfolder="tokenizer")
            text_encoder = CLIPTextModel.from_pretrained(root, subfolder="text_encoder")
            vae = AutoencoderKL.from_pretrained(root, subfolder="vae")
            unet = UNet2DConditionModel.from_pretrained(root, subfolder="unet")
            scheduler = DDPMScheduler.from_pretrained(root, subfolder="scheduler")
    except Exception as error:  # hub and file errors come in many types
        raise VlbenchError(
            f"--model {spec}: cannot load a Stable Diffusion checkpoint ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
            f"Offline, download it on a machine with internet (`huggingface-cli download {spec if spec != 'mini' else DEFAULT_MODEL} --local-dir DIR`), "
            "copy DIR here and pass --model DIR; `--model mini` needs nothing."
        ) from None
    for part in (text_encoder, vae, unet):
        part.requires_grad_(False)
        part.eval()
        part.to(device)
    folder = Path(root) if Path(root).is_dir() else _hub_snapshot(spec)
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
        return None if (Path(spec) / "model_index.json").exists() else f"{spec} has no model_index.json (a diffusers Stable Diffusion folder holds it)"
    try:
        _hub_snapshot(spec)
    except Exception:  # not in the local hub cache, or not a hub id
        return f"{spec} is not in the local Hugging Face cache: on a machine with internet run `huggingface-cli download {spec} --local-dir DIR`, copy DIR here and pass it as the model"
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


def checkpoint_files(root: Path) -> list[Path]:
    """The files a load reads: `model_index.json`, each component's configs and tokenizer files,
    and the weights diffusers / transformers pick (safetensors before bin): one file, or the
    shards its `.index.json` maps the weights to."""
    files = [root / "model_index.json"] if (root / "model_index.json").exists() else []
    for component in COMPONENTS:
        folder = root / component
        if folder.is_dir():
            files += [path for path in folder.iterdir() if path.suffix in (".json", ".txt")]
            files += next((weights for name in WEIGHT_FILES if (weights := _weight_files(folder, name))), [])
    return files


def _weight_files(folder: Path, name: str) -> list[Path]:
    """`name` in `folder`, or the shards of its index (`name.index.json`); none if neither."""
    if (folder / name).exists():
        return [folder / name]
    index = folder / f"{name}.index.json"
    if not index.exists():
        return []
    return [folder / shard for shard in sorted(set(read_json(index).get("weight_map", {}).values()))]


def _hub_snapshot(repo: str) -> Path:
    """The local snapshot folder of a hub model that was just loaded from the cache."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo, local_files_only=True))
