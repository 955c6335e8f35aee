"""Loading a Stable Diffusion checkpoint's components, the way the diffusers folder layout defines.

`--model` is `mini` (the mini SD shipped with vlbench), a local folder in the diffusers layout
(`model_index.json`, `unet/`, `vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`) or a hub id
(default `stabilityai/stable-diffusion-2-1-base`, from the local hub cache when offline).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlbench.errors import VlbenchError

DEFAULT_MODEL = "stabilityai/stable-diffusion-2-1-base"


@dataclass
class StableDiffusionParts:
    tokenizer: Any
    text_encoder: Any
    vae: Any
    unet: Any
    scheduler: Any
    fingerprint: dict[str, Any]


def mini_sd_dir() -> Path:
    from vlbench.matchers.mini_models import mini_model_dir

    return mini_model_dir("mini-sd")


def load_stable_diffusion(model: str | None, device: str) -> StableDiffusionParts:
    """The five components, frozen, in eval mode, on `device`."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    spec = model or DEFAULT_MODEL
    root = str(mini_sd_dir()) if spec == "mini" else spec
    try:
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
    return StableDiffusionParts(tokenizer, text_encoder, vae, unet, scheduler, {"model": spec, "unet_config": dict(unet.config)})
