"""What the Stable Diffusion matchers feed a UNet: VAE latents of images and text-encoder states of
texts (frozen encoders, cached on disk), and one seeded noise bank per run.

The noise bank: one noise tensor per (run seed, timestep, latent shape), shared by every image and
every candidate of the run (common random numbers, as diffusion-itm upstream shares one noise
sample per timestep). So a pair's score is a function of (image, text, seed) alone: it does not
depend on the other candidates, on batching, on ranks or on order, and can be memoised.
"""

from __future__ import annotations

import hashlib
from importlib.metadata import version
from typing import Literal

import numpy as np
import torch

from vlbench.feature_cache import cached_features, code_sha256, device_identity, open_feature_cache, text_hash

Resize = Literal["squash", "center_crop", "clip_224"]
CLIP_SIZE = 224
LatentMode = Literal["mean", "sample"]


def seeded_generator(*parts) -> torch.Generator:
    """A CPU generator seeded by a hash of `parts` (run seed, example identity, timestep, …)."""
    digest = hashlib.blake2b("\1".join(str(part) for part in parts).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "big") >> 1)


def shared_noise(seed: int, timestep: int, shape) -> torch.Tensor:
    """The run's noise for `timestep` at latent `shape` (CPU float32): the same for every image,
    text and example."""
    return torch.randn(tuple(shape), generator=seeded_generator(seed, "noise", timestep, tuple(shape)))


class DiffusionInputs:
    """Latents and text states of one Stable Diffusion checkpoint, computed once per image/text.

    `resize`: `squash` (the released DSD code's `resize((512, 512))`), `center_crop` (shorter
    side to the UNet's pixel size, then the centre) or `clip_224` (the paper's fairness setting
    for Table 1: CLIP's input, the shorter side to 224 and the centre, bicubic, then upsampled
    bicubic to the UNet's pixel size). The cache keeps the VAE's latent
    distribution (mean and std), so both the mean and seeded samples come from it.
    """

    def __init__(self, sd, device: str, cache: bool, resize: Resize = "squash") -> None:
        self.sd = sd
        self.device = device
        self.resize = resize
        vae = sd.vae
        self.pixel_size = sd.unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1)
        producer = {
            "features": "sd-inputs",
            "code": code_sha256(DiffusionInputs, type(sd)),  # type(sd): the module that builds the VAE and text encoder
            "model": sd.fingerprint,
            "diffusers": version("diffusers"),
            "transformers": version("transformers"),
            "tokenizers": version("tokenizers"),  # transformers' CLIP tokenizer runs on it
            "torch": torch.__version__,
            "pillow": version("pillow"),  # resizes the pixels
            **device_identity(device),
            "resize": resize,
            "pixel_size": self.pixel_size,
        }
        self.cache = open_feature_cache(producer, cache)

    def latents(self, images, mode: LatentMode = "mean", sample_seeds=None) -> torch.Tensor:
        """`[n, k, 4, h, w]` latents × the VAE scaling factor, each image encoded once: k copies of
        the mean, or k samples, the j-th drawn with `seeded_generator(*sample_seeds[i][j])` for image i."""
        mean, std = self.latent_distribution(images)
        copies = len(sample_seeds[0]) if sample_seeds else 1
        if mode == "sample":
            noise = torch.stack([torch.stack([torch.randn(mean.shape[1:], generator=seeded_generator(*seed)) for seed in seeds]) for seeds in sample_seeds]).to(mean)
            latents = mean.unsqueeze(1) + std.unsqueeze(1) * noise
        else:
            latents = mean.unsqueeze(1).expand(-1, copies, -1, -1, -1)
        return latents * self.sd.vae.config.scaling_factor

    def latent_distribution(self, images) -> tuple[torch.Tensor, torch.Tensor]:
        """`[n, 4, h, w]` each image's VAE posterior mean and standard deviation (unscaled), each image encoded once."""
        distribution = self._cached("latent", [image.content_hash for image in images], images, self._encode)
        return distribution.chunk(2, dim=1)

    def text_states(self, texts, masked: bool = False) -> torch.Tensor:
        """`[n, max_length, width]` text-encoder output, padded to the tokenizer's max length.
        `masked` gives the encoder the tokenizer's attention mask, so that no position attends to
        padding (the padding positions' states change; the real tokens', behind the causal mask, do not)."""
        return self._cached("text-masked" if masked else "text", [text_hash(text) for text in texts], texts, lambda chosen: self._encode_texts(chosen, masked))

    def token_mask(self, texts) -> torch.Tensor:
        """`[n, max_length]` bool: the tokenizer's real tokens (BOS, the text, EOS), not padding."""
        return self._tokenize(texts).attention_mask.bool().to(self.device)

    def token_strings(self, texts) -> list[list[str]]:
        """Per text, its `max_length` token strings (word-end marks removed), aligned with `token_mask`."""
        tokenizer = self.sd.tokenizer
        return [[token.replace("</w>", "") for token in tokenizer.convert_ids_to_tokens(ids)] for ids in self._tokenize(texts).input_ids.tolist()]

    def pixels(self, images) -> torch.Tensor:
        """`[n, 3, size, size]` in [-1, 1], resized as `resize` says."""
        from PIL import Image, ImageOps

        size = self.pixel_size
        if self.resize == "squash":
            resized = [image.pixels.resize((size, size)) for image in images]
        elif self.resize == "center_crop":
            resized = [ImageOps.fit(image.pixels, (size, size)) for image in images]
        else:
            bicubic = Image.Resampling.BICUBIC
            resized = [ImageOps.fit(image.pixels, (CLIP_SIZE, CLIP_SIZE), method=bicubic).resize((size, size), bicubic) for image in images]
        array = np.stack([np.asarray(picture, dtype=np.float32) for picture in resized])
        return (torch.from_numpy(array).permute(0, 3, 1, 2) / 127.5 - 1).to(self.device)

    def _encode(self, images) -> torch.Tensor:
        distribution = self.sd.vae.encode(self.pixels(images).to(self.sd.vae.dtype)).latent_dist
        return torch.cat([distribution.mean, distribution.std], dim=1)

    def _encode_texts(self, texts, masked: bool) -> torch.Tensor:
        tokens = self._tokenize(texts)
        return self.sd.text_encoder(tokens.input_ids.to(self.device), attention_mask=tokens.attention_mask.to(self.device) if masked else None).last_hidden_state

    def _tokenize(self, texts):
        tokenizer = self.sd.tokenizer
        return tokenizer(list(texts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt")

    def _cached(self, kind, keys, items, encode) -> torch.Tensor:
        return cached_features(self.cache, kind, keys, items, encode, self.device)
