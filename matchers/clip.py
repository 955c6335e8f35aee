"""`clip`: zero-shot CLIP, the cosine similarity of open_clip image and text embeddings."""

from __future__ import annotations

from dataclasses import dataclass

from vlbench.types import Matcher


@dataclass
class ClipOptions:
    pass


class ClipMatcher(Matcher):
    """score(image, text) = cos(image embedding, text embedding). Each example's images and texts
    are encoded together, so a score never depends on other examples in a batch."""

    name = "clip"
    summary = "CLIP zero-shot (open_clip): cosine similarity of image and text embeddings."
    uses_model = True
    Options = ClipOptions

    def __init__(self, options, runtime):
        super().__init__(options, runtime)
        from vlbench.matchers.open_clip_loading import load_open_clip

        self.clip = load_open_clip(runtime.model, runtime.device)

    def score(self, images, texts):
        import torch
        import torch.nn.functional as F

        device = self.runtime.device
        pixels = torch.stack([self.clip.preprocess(image.pixels) for image in images]).to(device)
        tokens = self.clip.tokenizer(list(texts)).to(device)
        image_features = F.normalize(self.clip.model.encode_image(pixels).float(), dim=-1)
        text_features = F.normalize(self.clip.model.encode_text(tokens).float(), dim=-1)
        return image_features @ text_features.T

    def fingerprint(self):
        return {**super().fingerprint(), **self.clip.fingerprint}

    def library_versions(self):
        return ["open_clip_torch", "torchvision"]
