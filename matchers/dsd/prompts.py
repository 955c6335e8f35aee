"""DSD's attention-based prompt learning, in the attention processors that apply it: learned key and
value prompts on each captured cross-attention layer, shifted by an image-conditional meta-net,
and the score calibration `bce` trains."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

import torch

from vlbench.matchers.stable_diffusion.capture import CapturingCrossAttention, Readout

MetaInput = Literal["layer", "latent"]
LATENT_GRID = 4
LATENT_SIGNAL_WIDTH = 4 * LATENT_GRID * LATENT_GRID


class PromptedCrossAttention(CapturingCrossAttention):
    """A capturing processor with this layer's prompts: `P_k`, `P_v` `[text tokens, inner]` (zero at
    start) and a meta-net `Linear(d, d/16) → ReLU → Linear(d/16, 2·inner)` whose output
    `π = (π_k, π_v)` (zero at start) is added to every row: `K = W_k c + P_k + π_k`,
    `V = W_v c + P_v + π_v`. Untrained, it scores exactly as zero-shot DSD. Parameters are float32
    and cast to the keys' dtype in the call.

    The meta-net reads (`meta_input`) either `layer`: the mean of the image tokens entering this
    layer (d = its query width), which past the UNet's first cross-attention also carry the text;
    or `latent`: an image-only signal, the clean VAE latent average-pooled to 4×4 (d = 64), which
    the matcher sets in `image_signal` before each UNet call."""

    def __init__(self, readout: Readout, query_dim: int, inner: int, n_text_tokens: int, device, meta_input: MetaInput = "layer") -> None:
        super().__init__(readout)
        self.key_prompt = torch.nn.Parameter(torch.zeros(n_text_tokens, inner, device=device))
        self.value_prompt = torch.nn.Parameter(torch.zeros(n_text_tokens, inner, device=device))
        self.meta_input = meta_input
        self.image_signal: torch.Tensor | None = None
        width = query_dim if meta_input == "layer" else LATENT_SIGNAL_WIDTH
        hidden = max(1, width // 16)
        meta_net = torch.nn.Sequential(OrderedDict(linear1=torch.nn.Linear(width, hidden), relu=torch.nn.ReLU(), linear2=torch.nn.Linear(hidden, 2 * inner)))
        torch.nn.init.zeros_(meta_net.linear2.weight)
        torch.nn.init.zeros_(meta_net.linear2.bias)
        self.meta_net = meta_net.to(device)

    def shift_keys_values(self, hidden_states, key, value):
        if self.meta_input == "layer":
            signal = hidden_states.float().mean(dim=1)
        elif self.image_signal is None or len(self.image_signal) != len(hidden_states):
            raise RuntimeError("meta_input latent: the matcher did not set this UNet call's image signal")
        else:
            signal = self.image_signal
        shift_key, shift_value = self.meta_net(signal).unsqueeze(1).chunk(2, dim=-1)
        key = key + (self.key_prompt + shift_key).to(key.dtype)
        value = value + (self.value_prompt + shift_value).to(value.dtype)
        return key, value


def latent_signal(latents: torch.Tensor) -> torch.Tensor:
    """`[jobs, 64]`: clean latents `[jobs, 4, h, w]` average-pooled to 4×4, the image-only meta-net input."""
    return torch.nn.functional.adaptive_avg_pool2d(latents.float(), LATENT_GRID).flatten(1)


class DSDPrompts(torch.nn.Module):
    """Everything `dsd` trains: one prompted processor per captured layer (forward order) and the
    calibration `exp(log_scale) · score + bias` (rank-preserving; the logit `bce` trains)."""

    def __init__(self, unet, layers: Sequence[str], readout: Readout, n_text_tokens: int, meta_input: MetaInput = "layer") -> None:
        super().__init__()
        device = unet.device
        processors = []
        for layer in layers:
            attention = unet.get_submodule(layer)
            processors.append(PromptedCrossAttention(readout, attention.to_q.in_features, attention.to_k.out_features, n_text_tokens, device, meta_input))
        self.processors = torch.nn.ModuleList(processors)
        self.log_scale = torch.nn.Parameter(torch.zeros((), device=device))
        self.bias = torch.nn.Parameter(torch.zeros((), device=device))

    def set_image_signal(self, signal: torch.Tensor | None) -> None:
        """The next UNet call's image-only meta-net input (`meta_input: latent`)."""
        for processor in self.processors:
            processor.image_signal = signal

    def calibrate(self, scores: torch.Tensor) -> torch.Tensor:
        return self.log_scale.exp() * scores + self.bias
