"""A model's image transform applied to a batch: the per-image steps (resize, crop) on each image,
then its final to-tensor and normalise steps once on the stacked batch, with the same floats as
applying the whole transform to each image (elementwise operations, in the same order)."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import Compose, Normalize, ToTensor
from torchvision.transforms import functional as F

try:
    from open_clip.transform import MaybeToTensor
except ImportError:  # older open_clip: ToTensor only
    MaybeToTensor = ToTensor


def preprocess_batch(preprocess, pictures) -> torch.Tensor:
    """`[n, C, H, W]`: `preprocess` of each PIL image in `pictures`, stacked. Transforms that do
    not end in ToTensor and Normalize, or whose per-image steps do not give same-sized RGB images,
    are applied to each image whole."""
    steps = preprocess.transforms if isinstance(preprocess, Compose) else []
    if len(steps) < 2 or type(steps[-2]) not in (ToTensor, MaybeToTensor) or type(steps[-1]) is not Normalize:
        return torch.stack([preprocess(picture) for picture in pictures])
    head = Compose(steps[:-2])
    images = [head(picture) for picture in pictures]
    if any(getattr(image, "mode", None) != "RGB" or image.size != images[0].size for image in images):
        return torch.stack([preprocess(picture) for picture in pictures])
    pixels = torch.from_numpy(np.stack([np.asarray(image) for image in images])).permute(0, 3, 1, 2).contiguous()
    normalize = steps[-1]
    return F.normalize(pixels.to(torch.get_default_dtype()).div(255), normalize.mean, normalize.std, normalize.inplace)
