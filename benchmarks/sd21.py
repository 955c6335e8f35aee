"""A randomly initialised Stable Diffusion 2.1-base: its UNet, VAE and text encoder shapes (1024-wide
text states; the mini tokenizer), written once under $VLBENCH_CACHE/benchmarks. Weights are
random, so it gives realistic costs, not scores."""

from __future__ import annotations

from pathlib import Path

import torch

from vlbench.config import cache_dir

SD21_UNET = {
    "sample_size": 64, "cross_attention_dim": 1024, "attention_head_dim": [5, 10, 20, 20], "block_out_channels": [320, 640, 1280, 1280],
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "use_linear_projection": True, "layers_per_block": 2,
}
SD21_VAE = {"block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4, "layers_per_block": 2, "latent_channels": 4, "sample_size": 512}
SD21_TEXT = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 23, "num_attention_heads": 16, "hidden_act": "gelu", "max_position_embeddings": 77}


def sd21_random(sample_size: int = 64) -> Path:
    """The SD-2.1-base-shaped random checkpoint folder (written on first use); `sample_size` is
    the latent side the UNet's config declares, so the matchers feed it `8 × sample_size` pixels."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from vlbench.tasks.miniworld.tokenizer import write_tokenizer
    from vlbench.tasks.miniworld.train_sd import SCHEDULER_CONFIG

    root = cache_dir() / "benchmarks" / ("sd21-base-random" if sample_size == 64 else f"sd21-base-random-{sample_size}")
    if (root / "model_index.json").exists():
        return root
    torch.manual_seed(0)
    write_tokenizer(root / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer")
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **SD21_TEXT))
    pipeline = StableDiffusionPipeline(
        vae=AutoencoderKL(**SD21_VAE), text_encoder=text_encoder, tokenizer=tokenizer, unet=UNet2DConditionModel(**{**SD21_UNET, "sample_size": sample_size}),
        scheduler=DDPMScheduler(**SCHEDULER_CONFIG), safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipeline.save_pretrained(root, safe_serialization=True)
    return root
