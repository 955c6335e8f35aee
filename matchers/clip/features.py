"""Frozen open_clip towers as the CLIP matchers use them: pre-projection features (cached on disk)
and the projection heads that turn them into the joint embedding.

The "last linear heads" are the vision tower's `proj` and the model's `text_projection` (open_clip
ViT towers with its own text transformer). Other towers (ResNet, timm, Hugging Face text) work
for zero-shot `clip` through their full encoders; `clip-ft` and `cocoop` need the heads and say so.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager
from importlib.metadata import version

import torch
import torch.nn.functional as F

from vlbench.errors import VlbenchError
from vlbench.feature_cache import cached_features, code_sha256, device_identity, open_feature_cache, text_hash
from vlbench.matchers.clip.preprocessing import preprocess_batch


class ClipFeatures:
    """Image and text features of a frozen open_clip model, before its projection heads."""

    def __init__(self, clip, device: str, cache: bool) -> None:
        self.clip = clip
        self.model = clip.model.requires_grad_(False)
        self.device = device
        visual_head = getattr(self.model.visual, "proj", None)
        text_head = getattr(self.model, "text_projection", None)
        self.has_heads = isinstance(visual_head, torch.nn.Parameter) and isinstance(text_head, torch.nn.Parameter) and hasattr(self.model, "token_embedding")
        self.image_projection = visual_head if self.has_heads else None
        self.text_projection = text_head if self.has_heads else None
        towers = tower_libraries(self.model, clip.tokenizer)
        self.libraries = ["open_clip_torch", "torchvision", "ftfy", "regex", *towers]  # ftfy, regex: open_clip's text cleaning
        producer = {
            "features": "clip-pre-projection" if self.has_heads else "clip-embedding",
            "code": code_sha256(ClipFeatures, preprocess_batch, type(clip)),  # type(clip): the module that builds the model
            "model": clip.fingerprint,
            "open_clip": version("open_clip_torch"),
            "torch": torch.__version__,
            "torchvision": version("torchvision"),  # with Pillow, resizes and crops the pixels
            "pillow": version("pillow"),
            "ftfy": version("ftfy"),  # with regex, open_clip's tokenizer cleans and splits texts
            "regex": version("regex"),
            **{name: version(name) for name in towers},  # timm, transformers, tokenizers where a tower or the tokenizer runs on them
            **device_identity(device),
            "preprocess": repr(clip.preprocess),
        }
        self.cache = open_feature_cache(producer, cache)
        self.indexing, self.indexed = threading.Lock(), False
        self.ahead: OrderedDict[str, object] = OrderedDict()  # decoded images of examples not scored yet that the cache lacks
        self.ahead_lock = threading.Lock()

    def require_heads(self, matcher: str) -> None:
        if not self.has_heads:
            raise VlbenchError(
                f"matcher '{matcher}' trains on open_clip's projection heads (visual.proj, text_projection), "
                f"which --model {self.clip.fingerprint['model']} does not have; use an open_clip ViT model (e.g. ViT-B-16:openai)"
            )

    def images(self, images) -> torch.Tensor:
        """`[n, width]` float32 features of the vision tower before `proj` (the embedding without heads)."""
        keys = [image.content_key for image in images]
        with self.ahead_lock:
            for key in keys:
                self.ahead.pop(key, None)
        return cached_features(self.cache, "image", keys, images, self._encode_images, self.device, self._images_ahead)

    def decode_uncached(self, images) -> None:
        """Decode the images whose features the cache lacks (in the loading threads, ahead of
        `images`); the others stay undecoded. With a cache, the decoded ones fill up the last
        encoder pass of an earlier call of `images` (their features are then cached)."""
        with self.indexing:
            if self.cache is not None and not self.indexed:
                self.cache.index("image")
            self.indexed = True
        decoded = []
        for image in images:
            if self.cache is None or not self.cache.holds("image", image.content_key):
                image.pixels  # noqa: B018 - decoded here rather than on the scoring thread
                decoded.append(image)
        if self.cache is not None:  # once all decode: an example with an unreadable image is not scored
            with self.ahead_lock:
                self.ahead.update((image.content_key, image) for image in decoded)

    def _images_ahead(self, count: int) -> list:
        """Up to `count` (key, image) of the decoded images later examples show whose features the cache lacks."""
        chosen = []
        with self.ahead_lock:
            while self.ahead and len(chosen) < count:
                key, image = self.ahead.popitem(last=False)
                if not self.cache.holds("image", key):
                    chosen.append((key, image))
        return chosen

    def texts(self, texts) -> torch.Tensor:
        """`[n, width]` float32 features of the text tower before `text_projection`."""
        return cached_features(self.cache, "text", [text_hash(text) for text in texts], texts, self._encode_texts, self.device)

    def image_embeddings(self, image_features: torch.Tensor) -> torch.Tensor:
        """Unit-norm joint embeddings of image features through the model's own (frozen) head."""
        return F.normalize(image_features @ self.image_projection.float() if self.has_heads else image_features, dim=-1)

    def text_embeddings(self, text_features: torch.Tensor) -> torch.Tensor:
        """Unit-norm joint embeddings of text features through the model's own (frozen) head."""
        return F.normalize(text_features @ self.text_projection.float() if self.has_heads else text_features, dim=-1)

    def tokenize(self, texts) -> torch.Tensor:
        return self.clip.tokenizer(list(texts)).to(self.device)

    def encode_token_embeddings(self, embeddings: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """The text tower from token embeddings `[n, context, width]`: positions, transformer, final
        norm, then the feature at the pooling index the model's rule finds in `ids`."""
        model = self.model
        cast = model.transformer.get_cast_dtype()
        x = embeddings.to(cast) + model.positional_embedding.to(cast)
        x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask))
        return x[torch.arange(len(x), device=x.device), self.pool_index(ids)].float()

    def pool_index(self, ids: torch.Tensor) -> torch.Tensor:
        """Where the text tower takes its feature (the EOS token for CLIP's `argmax` pooling)."""
        pool = self.model.text_pool_type
        if pool == "argmax":
            return ids.argmax(dim=-1)
        if pool == "eos":
            return (ids == self.model.text_eos_id).int().argmax(dim=-1)
        if pool == "last":
            return torch.full((len(ids),), ids.shape[1] - 1, device=ids.device)
        if pool == "first":
            return torch.zeros(len(ids), dtype=torch.long, device=ids.device)
        raise VlbenchError(f"text pooling '{pool}' of --model {self.clip.fingerprint['model']} is not supported by prompt learning")

    def _encode_images(self, images) -> torch.Tensor:
        pixels = preprocess_batch(self.clip.preprocess, [image.pixels for image in images]).to(self.device)
        with without_parameter(self.model.visual, "proj", when=self.has_heads):
            return self.model.encode_image(pixels).float()

    def _encode_texts(self, texts) -> torch.Tensor:
        ids = self.tokenize(texts)
        if not self.has_heads:
            return self.model.encode_text(ids).float()
        return self.encode_token_embeddings(self.model.token_embedding(ids), ids)


def tower_libraries(model: torch.nn.Module, tokenizer) -> list[str]:
    """The libraries beside open_clip whose code computes this model's features: timm for a timm
    tower (SigLIP's, ConvNeXt's, EVA's), transformers and its tokenizers for a Hugging Face text
    tower or tokenizer."""
    packages = {type(part).__module__.split(".")[0] for part in [*model.modules(), *vars(tokenizer).values()]}
    return [*(["timm"] if "timm" in packages else []), *(["transformers", "tokenizers"] if "transformers" in packages else [])]


@contextmanager
def without_parameter(module: torch.nn.Module, name: str, when: bool = True):
    """Run `module` with parameter `name` unset (open_clip then skips that projection)."""
    if not when:
        yield
        return
    saved = getattr(module, name)
    setattr(module, name, None)
    try:
        yield
    finally:
        setattr(module, name, saved)
