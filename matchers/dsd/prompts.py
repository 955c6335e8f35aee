"""DSD's attention-based prompt learning, in the attention processors that apply it: learned key and
value prompts on each captured cross-attention layer, shifted by an image-conditional meta-net,
and the score calibration `bce` trains."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch

from vlbench.matchers.stable_diffusion.capture import CapturingCrossAttention, Readout


class PromptedCrossAttention(CapturingCrossAttention):
    """A capturing processor with this layer's prompts: `P_k`, `P_v` `[text tokens, inner]` (zero at
    start) and a meta-net `Linear(d, d/16) → ReLU → Linear(d/16, 2·inner)` on the mean of the image
    tokens entering the layer, whose output `π = (π_k, π_v)` (zero at start) is added to every row:
    `K = W_k c + P_k + π_k`, `V = W_v c + P_v + π_v`. Untrained, it scores exactly as zero-shot DSD.
    Parameters are float32 and cast to the keys' dtype in the call."""

    def __init__(self, readout: Readout, query_dim: int, inner: int, n_text_tokens: int, device) -> None:
        super().__init__(readout)
        self.key_prompt = torch.nn.Parameter(torch.zeros(n_text_tokens, inner, device=device))
        self.value_prompt = torch.nn.Parameter(torch.zeros(n_text_tokens, inner, device=device))
        hidden = max(1, query_dim // 16)
        meta_net = torch.nn.Sequential(OrderedDict(linear1=torch.nn.Linear(query_dim, hidden), relu=torch.nn.ReLU(), linear2=torch.nn.Linear(hidden, 2 * inner)))
        torch.nn.init.zeros_(meta_net.linear2.weight)
        torch.nn.init.zeros_(meta_net.linear2.bias)
        self.meta_net = meta_net.to(device)

    def shift_keys_values(self, hidden_states, key, value):
        shift_key, shift_value = self.meta_net(hidden_states.float().mean(dim=1)).unsqueeze(1).chunk(2, dim=-1)
        key = key + (self.key_prompt + shift_key).to(key.dtype)
        value = value + (self.value_prompt + shift_value).to(value.dtype)
        return key, value


class DSDPrompts(torch.nn.Module):
    """Everything `dsd` trains: one prompted processor per captured layer (forward order) and the
    calibration `exp(log_scale) · score + bias` (rank-preserving; the logit `bce` trains)."""

    def __init__(self, unet, layers: Sequence[str], readout: Readout, n_text_tokens: int) -> None:
        super().__init__()
        device = unet.device
        processors = []
        for layer in layers:
            attention = unet.get_submodule(layer)
            processors.append(PromptedCrossAttention(readout, attention.to_q.in_features, attention.to_k.out_features, n_text_tokens, device))
        self.processors = torch.nn.ModuleList(processors)
        self.log_scale = torch.nn.Parameter(torch.zeros((), device=device))
        self.bias = torch.nn.Parameter(torch.zeros((), device=device))

    def calibrate(self, scores: torch.Tensor) -> torch.Tensor:
        return self.log_scale.exp() * scores + self.bias
