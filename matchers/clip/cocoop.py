"""`cocoop`: conditional prompt learning (CoCoOp, Zhou et al., 2022) on free-form texts.

For image i and text t the text tower reads [SOS] (ctx_1 + π_i) … (ctx_n + π_i) [tokens of t]
[EOS], where ctx are `n_ctx` learned vectors (initialised from the embeddings of `ctx_init`) and
π_i = meta_net(image embedding of i), meta_net = Linear(d, d/16) → ReLU → Linear(d/16, width).
score = exp(logit_scale) · cos(image embedding, text feature of the pair) + bias (CLIP's frozen
scale; the rank-neutral bias calibrates `bce` and starts at the training pairs' midpoint; under
CoCoOp's `ce` it changes no ranking). CLIP stays frozen. The text tower runs once per (image, text)
pair: CoCoOp's known cost. Training follows CoOp's trainer and its CoCoOp config: cross-entropy,
SGD lr 0.002, momentum 0.9, weight decay 5e-4, batch 1, 10 epochs, the first at 1e-5, then
Dassl's cosine per epoch (`epoch_cosine`), no gradient clipping. Where it differs, by design: the
images are the frozen tower's cached features of the evaluation crop (CoCoOp trains on random
resized crops and flips), CLIP runs in float32 (CoCoOp's config: fp16), and no "." is appended to
a text (CoCoOp's prompts end "<class name>."; vlbench's texts are sentences as the task gives them).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from vlbench.errors import VlbenchError
from vlbench.options import check
from vlbench.matchers.clip.zero_shot import TrainedClipMatcher


@dataclass
class CoCoOpOptions:
    n_ctx: int = 4
    ctx_init: str = "a photo of a"  # "" for random context vectors (normal, std 0.02)
    feature_cache: bool = True  # keep frozen image features on disk ($VLBENCH_CACHE/features)

    def __post_init__(self) -> None:
        check(self.n_ctx >= 1, "n_ctx", f"must be at least 1, got {self.n_ctx}")


class ConditionalPrompt(torch.nn.Module):
    """Context vectors and the meta-net, and the prompts they make for (image, text) pairs."""

    def __init__(self, features, n_ctx: int, ctx_init: str, image_dim: int) -> None:
        super().__init__()
        self.features = [features]  # a list keeps the frozen CLIP out of this module's parameters
        self.n_ctx = n_ctx
        width = features.model.token_embedding.embedding_dim
        if ctx_init:
            init_ids = self.content_ids(features.tokenize([ctx_init]))[0]
            if len(init_ids) != n_ctx:
                raise VlbenchError(f"matcher_options: ctx_init '{ctx_init}' is {len(init_ids)} tokens but n_ctx is {n_ctx}; make them agree, or set ctx_init: '' for random context vectors")
            ctx = features.model.token_embedding(init_ids).detach().float()
        else:
            ctx = torch.empty(n_ctx, width).normal_(std=0.02).to(features.device)  # drawn on the CPU: one seed, one draw, on any device
        self.ctx = torch.nn.Parameter(ctx.clone())
        hidden = max(1, image_dim // 16)
        self.meta_net = torch.nn.Sequential(OrderedDict(linear1=torch.nn.Linear(image_dim, hidden), relu=torch.nn.ReLU(), linear2=torch.nn.Linear(hidden, width))).to(features.device)
        self.logit_bias = torch.nn.Parameter(torch.zeros((), device=features.device))

    def content_ids(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """Each tokenised text's tokens between SOS and EOS."""
        ends = self.features[0].pool_index(ids)
        return [row[1:end] for row, end in zip(ids, ends.tolist())]

    def prompt_ids(self, texts) -> torch.Tensor:
        """`[n_texts, context]` ids: SOS, n_ctx placeholders (0), the text's tokens (cut to fit), EOS, padding."""
        ids = self.features[0].tokenize(texts)
        context = ids.shape[1]
        prompts = torch.zeros_like(ids)
        for row, content in enumerate(self.content_ids(ids)):
            eos = ids[row, 1 + len(content)]
            content = content[: context - self.n_ctx - 2]
            prompts[row, 0] = ids[row, 0]
            prompts[row, 1 + self.n_ctx : 1 + self.n_ctx + len(content)] = content
            prompts[row, 1 + self.n_ctx + len(content)] = eos
        return prompts

    def embeddings(self, prompt_ids: torch.Tensor, image_embeddings: torch.Tensor) -> torch.Tensor:
        """`[n_images, n_texts, context, width]`: token embeddings with ctx + π(image) at positions 1…n_ctx."""
        tokens = self.features[0].model.token_embedding(prompt_ids).float()
        shifted = self.ctx.unsqueeze(0) + self.meta_net(image_embeddings).unsqueeze(1)  # [I, n_ctx, width]
        n_images, (n_texts, context, width) = len(image_embeddings), tokens.shape
        return torch.cat(
            [
                tokens[:, :1].expand(n_images, n_texts, 1, width),
                shifted.unsqueeze(1).expand(n_images, n_texts, self.n_ctx, width),
                tokens[:, 1 + self.n_ctx :].expand(n_images, n_texts, context - 1 - self.n_ctx, width),
            ],
            dim=2,
        )


class CoCoOpMatcher(TrainedClipMatcher):
    name = "cocoop"
    summary = "CoCoOp prompt learning (open_clip): context vectors shifted by an image-conditioned meta-net."
    version = "4"  # 4: CoCoOp's schedule (per epoch) without gradient clipping
    # CoCoOp's recipe (trainers/cocoop.py and configs/trainers/CoCoOp in KaiyangZhou/CoOp): cross-entropy
    # over the candidates, SGD, Dassl's per-epoch cosine after a constant warm-up, no gradient clipping.
    train_defaults = {"loss": "ce", "optimizer": "sgd", "lr": 0.002, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "epoch_cosine", "warmup_epochs": 1, "warmup_lr": 1e-5, "epochs": 10, "batch_size": 1, "grad_clip": None}
    Options = CoCoOpOptions

    def __init__(self, options, runtime):
        super().__init__(options, runtime)
        with torch.random.fork_rng(devices=[]):  # the meta-net's initialisation is a function of the run's seed
            torch.manual_seed(runtime.seed)
            self.trained = ConditionalPrompt(self.features, options.n_ctx, options.ctx_init, self.features.image_projection.shape[1])

    def score_examples(self, batch):
        """Every image of the batch through the vision tower at once; the text tower per pair."""
        image_features, image_rows = self.batch_image_features(batch)
        return [self._prompted_scores(features, texts) for features, (_, texts) in zip(image_features.split(image_rows), batch)]

    def _prompted_scores(self, image_features, texts):
        image_embeddings = self.features.image_embeddings(image_features)
        ids = self.trained.prompt_ids(texts)
        embeddings = self.trained.embeddings(ids, image_embeddings)
        n_images, n_texts = embeddings.shape[:2]
        text_features = self.features.encode_token_embeddings(embeddings.flatten(0, 1), ids.repeat(n_images, 1))
        text_embeddings = self.features.text_embeddings(text_features).view(n_images, n_texts, -1)
        similarity = torch.einsum("id,itd->it", image_embeddings, text_embeddings)
        return self.features.model.logit_scale.exp().float() * similarity + self.trained.logit_bias
