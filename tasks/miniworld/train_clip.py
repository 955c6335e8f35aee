"""Recipe for the mini CLIP: an open_clip ViT trained contrastively on mini-world captions.

    vlbench miniworld train-clip OUT_DIR [--seed 0] [--steps 800]

OUT_DIR is an open_clip `local-dir` model (`open_clip_config.json`, `open_clip_model.safetensors`),
loaded with `open_clip.create_model_and_transforms("local-dir:OUT_DIR")` like any hub model.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict
from pathlib import Path

MODEL_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 4, "width": 96, "patch_size": 4, "head_width": 32, "mlp_ratio": 4.0},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 3},
}
PROMPT_PREFIXES = ("a photo of", "a photo of a", "a picture of", "an image of")
PREPROCESS_CONFIG = {"size": 32, "mode": "RGB", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic", "resize_mode": "shortest"}


def train_mini_clip(out_dir: Path, seed: int = 0, steps: int = 800, batch_size: int = 128, lr: float = 2e-3, log=print) -> dict:
    """Train and save the mini CLIP; returns what the model card records."""
    import open_clip
    import torch
    import torch.nn.functional as F
    from safetensors.torch import save_file

    from vlbench.tasks.miniworld.training_data import WebCaptions, training_groups

    torch.manual_seed(seed)
    started = time.perf_counter()
    model = open_clip.CLIP(**MODEL_CONFIG)
    tokenizer = open_clip.SimpleTokenizer(context_length=MODEL_CONFIG["text_cfg"]["context_length"])
    web_captions = WebCaptions()
    pairs = [pair for group in training_groups(seed, n_pairs=steps * batch_size // 4 + 1000, captions=web_captions) for pair in group]
    rng = random.Random(f"mini-clip-batches:{seed}")
    prompts = random.Random(f"mini-clip-prompts:{seed}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.05)
    mean, std = torch.tensor(PREPROCESS_CONFIG["mean"]).view(1, 3, 1, 1), torch.tensor(PREPROCESS_CONFIG["std"]).view(1, 3, 1, 1)
    model.train()
    for step in range(steps):
        batch = rng.sample(pairs, batch_size)
        pixels = torch.stack([torch.from_numpy(_array(pair.image)) for pair in batch]).permute(0, 3, 1, 2).float() / 255
        pixels = (pixels - mean) / std
        extra = [wrong for pair in batch for wrong in pair.wrong_captions]
        tokens = tokenizer([prompted(pair.caption, prompts) for pair in batch] + extra)
        image_features = F.normalize(model.encode_image(pixels), dim=-1)
        text_features = F.normalize(model.encode_text(tokens), dim=-1)
        logits = model.logit_scale.exp() * image_features @ text_features.T
        targets = torch.arange(len(batch))
        # Duplicate captions in a batch are not negatives of each other.
        captions = [pair.caption for pair in batch]
        same = torch.tensor([[a == b for b in captions] for a in captions])
        image_to_text = logits.clone()
        image_to_text[:, : len(batch)] = image_to_text[:, : len(batch)].masked_fill(same & ~torch.eye(len(batch), dtype=torch.bool), -1e4)
        text_to_image = logits[:, : len(batch)].T.masked_fill(same & ~torch.eye(len(batch), dtype=torch.bool), -1e4)
        loss = (F.cross_entropy(image_to_text, targets) + F.cross_entropy(text_to_image, targets)) / 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)
        if step % 100 == 0 or step == steps - 1:
            log(f"step {step}/{steps} loss {loss.item():.4f} ({time.perf_counter() - started:.0f}s)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # fp16 on disk halves the size (the 49,408-token embedding dominates); open_clip casts on load.
    state = {name: tensor.detach().half().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(out_dir / "open_clip_model.safetensors"))
    config = {"model_cfg": MODEL_CONFIG, "preprocess_cfg": PREPROCESS_CONFIG}
    (out_dir / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    info = {"seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr, "web_captions": asdict(web_captions), "train_seconds": round(time.perf_counter() - started, 1)}
    (out_dir / "training.json").write_text(json.dumps(info) + "\n")
    return info


def prompted(caption: str, rng: random.Random) -> str:
    """A quarter of the captions get a prompt prefix, as web captions often have one, so the
    model reads "a photo of a …" (CoCoOp's initial prompt) as it reads the bare caption."""
    return f"{rng.choice(PROMPT_PREFIXES)} {caption}" if rng.random() < 0.25 else caption


def _array(image):
    import numpy as np

    return np.array(image, dtype=np.uint8)
