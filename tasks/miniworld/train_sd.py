"""Recipe for the mini Stable Diffusion, saved in the diffusers folder layout.

    vlbench miniworld train-sd OUT_DIR [--seed 0] [--vae-steps 600] [--unet-steps 3000]

1. A CLIP BPE tokenizer over the mini-world's words.
2. An `AutoencoderKL` (32 px → 4×16×16 latents): reconstruction + a small KL term; its
   `scaling_factor` is set to 1/std of the latents, as Stable Diffusion's is.
3. A `UNet2DConditionModel` (cross-attention in the down, mid and up blocks at 8×8) and a
   `CLIPTextModel`, trained together from scratch on epsilon prediction (DDPM, scaled-linear
   betas, 1000 steps, 10% empty captions), plus a hard-negative ranking term (HardNeg-DiffusionITM):
   a sentence's denoising error on its picture should be lower than its swapped twin's.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

UNET_CONFIG = {
    "sample_size": 16, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
    "block_out_channels": (32, 64), "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"), "cross_attention_dim": 64,
    "attention_head_dim": 8, "norm_num_groups": 16,
}
VAE_CONFIG = {
    "in_channels": 3, "out_channels": 3, "down_block_types": ("DownEncoderBlock2D",) * 2,
    "up_block_types": ("UpDecoderBlock2D",) * 2, "block_out_channels": (32, 64), "latent_channels": 4,
    "layers_per_block": 1, "norm_num_groups": 16, "sample_size": 32,
}
TEXT_CONFIG = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 77}
SCHEDULER_CONFIG = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "prediction_type": "epsilon", "clip_sample": False, "steps_offset": 1}


def train_mini_sd(out_dir: Path, seed: int = 0, vae_steps: int = 600, unet_steps: int = 3000, batch_groups: int = 32, n_pairs: int = 40_000, log=print) -> dict:
    """Train all components and save them as a diffusers Stable Diffusion folder (settings in `training.json`)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from vlbench.tasks.miniworld.tokenizer import write_tokenizer
    from vlbench.tasks.miniworld.training_data import training_groups

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    started = time.perf_counter()
    write_tokenizer(out_dir / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(out_dir / "tokenizer")
    groups = training_groups(seed, n_pairs=n_pairs)
    items = [pair for group in groups for pair in group]
    pixels = torch.from_numpy(np.stack([np.array(pair.image, dtype=np.uint8) for pair in items])).permute(0, 3, 1, 2).float() / 127.5 - 1
    log(f"{len(items)} training pictures ({time.perf_counter() - started:.0f}s)")

    vae = AutoencoderKL(**VAE_CONFIG)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-3)
    rng = random.Random(f"mini-sd-batches:{seed}")
    for step in range(vae_steps):
        batch = pixels[rng.sample(range(len(items)), 64)]
        posterior = vae.encode(batch).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        loss = F.mse_loss(reconstruction, batch) + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == vae_steps - 1:
            log(f"vae step {step}/{vae_steps} loss {loss.item():.4f} ({time.perf_counter() - started:.0f}s)")
    vae.requires_grad_(False).eval()
    with torch.no_grad():
        latents = torch.cat([vae.encode(pixels[i : i + 256]).latent_dist.mean for i in range(0, len(pixels), 256)])
    scaling = float(1 / latents.std())
    vae.register_to_config(scaling_factor=scaling)
    latents = latents * scaling

    ids = tokenizer([pair.caption for pair in items] + [""], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    empty = ids[-1]
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **TEXT_CONFIG))
    unet = UNet2DConditionModel(**UNET_CONFIG)
    scheduler = DDPMScheduler(**SCHEDULER_CONFIG)
    parameters = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=1e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=unet_steps, pct_start=0.05)
    starts = np.cumsum([0] + [len(group) for group in groups])
    for step in range(unet_steps):
        chosen = rng.sample(range(len(groups)), batch_groups)
        index = [starts[g] + k for g in chosen for k in range(len(groups[g]))]
        twins = [(starts[g], starts[g] + 1) for g in chosen if len(groups[g]) == 2]
        position = {item: slot for slot, item in enumerate(index)}
        captions = ids[index].clone()
        dropped = torch.rand(len(index)) < 0.1
        captions[dropped] = empty
        # Ranking rows: each twin's picture with the other twin's sentence (same noise and t).
        keep = [(position[a], position[b]) for a, b in twins if not dropped[position[a]] and not dropped[position[b]]]
        wrong_rows = [a for a, b in keep] + [b for a, b in keep]
        wrong_captions = [b for a, b in keep] + [a for a, b in keep]
        x0 = latents[index]
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (len(index),))
        noisy = scheduler.add_noise(x0, noise, t)
        states = text_encoder(captions).last_hidden_state
        inputs = torch.cat([noisy, noisy[wrong_rows]])
        conditions = torch.cat([states, states[wrong_captions]])
        predicted = unet(inputs, torch.cat([t, t[wrong_rows]]), encoder_hidden_states=conditions).sample
        targets = torch.cat([noise, noise[wrong_rows]])
        errors = (predicted - targets).pow(2).mean(dim=(1, 2, 3))
        denoise = errors[: len(index)].mean()
        ranking = F.softplus(20 * (errors[wrong_rows].log() - errors[len(index) :].log())).mean() if wrong_rows else torch.zeros(())
        loss = denoise + 0.1 * ranking
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == unet_steps - 1:
            log(f"unet step {step}/{unet_steps} denoise {denoise.item():.4f} ranking {ranking.item():.4f} ({time.perf_counter() - started:.0f}s)")

    pipeline = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipeline.save_pretrained(out_dir, safe_serialization=True)
    info = {"seed": seed, "vae_steps": vae_steps, "unet_steps": unet_steps, "batch_groups": batch_groups, "n_pairs": n_pairs, "vae_scaling_factor": round(scaling, 4), "train_seconds": round(time.perf_counter() - started, 1)}
    (out_dir / "training.json").write_text(json.dumps(info) + "\n")
    return info
