"""Recipe for the mini CLIP: an open_clip ViT trained contrastively on mini-world captions, web-like
ones through the shipped heads and exact ones beside their swapped twins through heads that are not
saved (`train_mini_clip`).

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

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from vlbench.matchers.clip.features import without_parameter
from vlbench.tasks.miniworld.scenes import one_meaning
from vlbench.tasks.miniworld.training_data import Pair, WebCaptions, relation_twin_groups, training_groups

MODEL_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 4, "width": 96, "patch_size": 4, "head_width": 32, "mlp_ratio": 4.0},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 3},
}
PROMPT_PREFIXES = ("a photo of", "a photo of a", "a picture of", "an image of")
PREPROCESS_CONFIG = {"size": 32, "mode": "RGB", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic", "resize_mode": "shortest"}
WEB_CAPTIONS = WebCaptions()  # a stated relation is right only as often as chance
TWIN_POOL = 4000  # sentence-twin groups the second objective draws its batches from
TWIN_LOGIT_SCALE = 2.659  # about log(1 / 0.07), CLIP's initial temperature
MAX_LOGIT_SCALE = 4.6052  # log(100), where CLIP clamps it


def train_mini_clip(out_dir: Path, seed: int = 0, steps: int = 800, batch_size: int = 128, lr: float = 2e-3, twins_per_step: int = 32, twin_weight: float = 1.0, mask_synonyms: bool = False, log=print) -> dict:
    """Train and save the mini CLIP; returns what the model card records.

    Two contrastive objectives share the towers: `batch_size` web-like captions per step through
    the shipped heads (`visual.proj`, `text_projection`), and `twins_per_step` exact sentences, each
    beside its swapped twin (two pictures), through a second pair of heads that is not saved. The
    towers learn composition; the shipped heads, which only ever see web captions, do not read it.
    Identical captions in a batch are not negatives of each other; with `mask_synonyms`, neither
    are a relation sentence and its converse (`scenes.one_meaning`; not the shipped recipe)."""
    meaning = one_meaning if mask_synonyms else (lambda caption: caption)
    torch.manual_seed(seed)
    started = time.perf_counter()
    model = open_clip.CLIP(**MODEL_CONFIG)
    twin_heads = TwinHeads(MODEL_CONFIG["vision_cfg"]["width"], MODEL_CONFIG["text_cfg"]["width"], MODEL_CONFIG["embed_dim"])
    tokenizer = open_clip.SimpleTokenizer(context_length=MODEL_CONFIG["text_cfg"]["context_length"])
    pairs = [pair for group in training_groups(seed, n_pairs=steps * batch_size // 4 + 1000, captions=WEB_CAPTIONS) for pair in group]
    twins = relation_twin_groups(seed, n_groups=min(TWIN_POOL, steps * twins_per_step))
    rng = random.Random(f"mini-clip-batches:{seed}")
    prompts = random.Random(f"mini-clip-prompts:{seed}")
    optimizer = torch.optim.AdamW([*model.parameters(), *twin_heads.parameters()], lr=lr, weight_decay=0.1)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.05)
    model.train()
    for step in range(steps):
        batch = rng.sample(pairs, batch_size)
        exact = [pair for group in rng.sample(twins, twins_per_step) for pair in group]
        extra = [wrong for pair in batch for wrong in pair.wrong_captions]
        web_texts = [prompted(pair.caption, prompts) for pair in batch] + extra
        image_features, text_features = _pre_projection(model, _pixels(batch + exact), tokenizer(web_texts + [pair.caption for pair in exact]))
        web_images, web_text_features = image_features[: len(batch)] @ model.visual.proj, text_features[: len(web_texts)] @ model.text_projection
        loss = _contrastive_loss(web_images, web_text_features, model.logit_scale, [meaning(pair.caption) for pair in batch])
        if exact:
            exact_images, exact_texts = twin_heads(image_features[len(batch) :], text_features[len(web_texts) :])
            loss = loss + twin_weight * _contrastive_loss(exact_images, exact_texts, twin_heads.logit_scale, [meaning(pair.caption) for pair in exact])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
            twin_heads.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        if step % 100 == 0 or step == steps - 1:
            log(f"step {step}/{steps} loss {loss.item():.4f} ({time.perf_counter() - started:.0f}s)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # fp16 on disk halves the size (the 49,408-token embedding dominates); open_clip casts on load.
    state = {name: tensor.detach().half().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(out_dir / "open_clip_model.safetensors"))
    config = {"model_cfg": MODEL_CONFIG, "preprocess_cfg": PREPROCESS_CONFIG}
    (out_dir / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    info = {
        "seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr, "web_captions": asdict(WEB_CAPTIONS),
        "twins_per_step": twins_per_step, "twin_pool": TWIN_POOL, "twin_weight": twin_weight, "mask_synonyms": mask_synonyms, "train_seconds": round(time.perf_counter() - started, 1),
    }
    (out_dir / "training.json").write_text(json.dumps(info) + "\n")
    return info


class TwinHeads(torch.nn.Module):
    """The second objective's image and text projections and logit scale (trained, not saved)."""

    def __init__(self, image_width: int, text_width: int, embed_dim: int) -> None:
        super().__init__()
        self.image_projection = torch.nn.Parameter(torch.randn(image_width, embed_dim) * image_width**-0.5)
        self.text_projection = torch.nn.Parameter(torch.randn(text_width, embed_dim) * text_width**-0.5)
        self.logit_scale = torch.nn.Parameter(torch.tensor(TWIN_LOGIT_SCALE))

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return image_features @ self.image_projection, text_features @ self.text_projection


def prompted(caption: str, rng: random.Random) -> str:
    """A quarter of the captions get a prompt prefix, as web captions often have one, so the
    model reads "a photo of a …" (CoCoOp's initial prompt) as it reads the bare caption."""
    return f"{rng.choice(PROMPT_PREFIXES)} {caption}" if rng.random() < 0.25 else caption


def _pixels(pairs: list[Pair]) -> torch.Tensor:
    """`[n, 3, 32, 32]` normalised pixels of the pairs' pictures."""
    mean = torch.tensor(PREPROCESS_CONFIG["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(PREPROCESS_CONFIG["std"]).view(1, 3, 1, 1)
    pixels = torch.stack([torch.from_numpy(np.array(pair.image, dtype=np.uint8)) for pair in pairs]).permute(0, 3, 1, 2).float() / 255
    return (pixels - mean) / std


def _pre_projection(model, pixels: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The towers' features before the shipped heads: `[n_images, 96]`, `[n_texts, 64]`."""
    with without_parameter(model.visual, "proj"), without_parameter(model, "text_projection"):
        return model.encode_image(pixels), model.encode_text(tokens)


def _contrastive_loss(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, logit_scale: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """Symmetric InfoNCE of `len(captions)` images against as many texts, the i-th text the i-th
    image's caption (texts beyond them: extra negatives for the images); equal `captions` in a
    batch are not negatives of each other."""
    logits = logit_scale.exp() * F.normalize(image_embeddings, dim=-1) @ F.normalize(text_embeddings, dim=-1).T
    n = len(captions)
    targets = torch.arange(n)
    same = torch.tensor([[a == b for b in captions] for a in captions]) & ~torch.eye(n, dtype=torch.bool)
    image_to_text = logits.clone()
    image_to_text[:, :n] = image_to_text[:, :n].masked_fill(same, -1e4)
    text_to_image = logits[:, :n].T.masked_fill(same, -1e4)
    return (F.cross_entropy(image_to_text, targets) + F.cross_entropy(text_to_image, targets)) / 2
