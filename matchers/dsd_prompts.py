"""DSD's attention-based prompt learning: learned key/value prompts on the captured cross-attention
layers, shifted by an image-conditional meta-net, plus the score calibration for `bce`."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch


class AttentionPrompts(torch.nn.Module):
    """For each captured layer: `P_k`, `P_v` `[text tokens, inner dim]` (zero at start) and a
    meta-net `Linear(d, d/16) → ReLU → Linear(d/16, 2·inner)` on the mean of the image tokens
    entering the layer, whose output `π = (π_k, π_v)` (zero at start) is added to every row:
    `K = W_k c + P_k + π_k`, `V = W_v c + P_v + π_v`. An untrained module scores exactly as
    zero-shot DSD. `log_scale` and `bias` calibrate the score into a logit."""

    def __init__(self, unet, layers: Sequence[str], n_text_tokens: int) -> None:
        super().__init__()
        self.index = {layer: position for position, layer in enumerate(layers)}
        keys, values, meta_nets = [], [], []
        device = unet.device
        for layer in layers:
            attention = unet.get_submodule(layer)
            query_dim, inner = attention.to_q.in_features, attention.to_k.out_features
            keys.append(torch.nn.Parameter(torch.zeros(n_text_tokens, inner, device=device)))
            values.append(torch.nn.Parameter(torch.zeros(n_text_tokens, inner, device=device)))
            hidden = max(1, query_dim // 16)
            meta_net = torch.nn.Sequential(OrderedDict(linear1=torch.nn.Linear(query_dim, hidden), relu=torch.nn.ReLU(), linear2=torch.nn.Linear(hidden, 2 * inner)))
            torch.nn.init.zeros_(meta_net.linear2.weight)
            torch.nn.init.zeros_(meta_net.linear2.bias)
            meta_nets.append(meta_net.to(device))
        self.key_prompts = torch.nn.ParameterList(keys)
        self.value_prompts = torch.nn.ParameterList(values)
        self.meta_nets = torch.nn.ModuleList(meta_nets)
        self.log_scale = torch.nn.Parameter(torch.zeros((), device=device))
        self.bias = torch.nn.Parameter(torch.zeros((), device=device))

    def shift(self, layer: str, hidden_states: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values `[batch, text tokens, inner]` with this layer's prompts added."""
        position = self.index[layer]
        shift_key, shift_value = self.meta_nets[position](hidden_states.float().mean(dim=1)).unsqueeze(1).chunk(2, dim=-1)
        key = key + (self.key_prompts[position] + shift_key).to(key.dtype)
        value = value + (self.value_prompts[position] + shift_value).to(value.dtype)
        return key, value

    def calibrate(self, scores: torch.Tensor) -> torch.Tensor:
        """`exp(log_scale) · score + bias`: rank-preserving, the logit `bce` trains."""
        return self.log_scale.exp() * scores + self.bias
