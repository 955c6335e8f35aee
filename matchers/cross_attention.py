"""Reading a diffusers UNet's cross-attention: which `attn2` layers exist, in forward order, and an
attention processor that hands their logits and probabilities to a store.

The processor is set on the chosen `attn2` modules only (`UNet2DConditionModel.set_attn_processor`
with a dict); every other layer keeps the processor it had (SDPA, or xformers where enabled). When
only attention is needed, the store raises `StopUNet` after the last chosen layer, so the rest of
the UNet never runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import torch

STAGES = ("down_blocks", "mid_block", "up_blocks")


class StopUNet(Exception):
    """Raised by `AttentionStore` after the last captured layer when the UNet output is not needed."""


def cross_attention_layers(unet) -> list[str]:
    """Module names of every `attn2` (cross-attention) in forward order: down, mid, up."""
    names = [name.removesuffix(".processor") for name in unet.attn_processors if name.endswith("attn2.processor")]
    return sorted(names, key=_forward_position)


def _forward_position(name: str) -> tuple:
    stage = STAGES.index(name.split(".")[0])
    return (stage, *(int(number) for number in re.findall(r"\.(\d+)", name)))


def released_layers(unet) -> list[str]:
    """The released DSD code's layers: in each of the down, mid and up stages, the last block that
    has cross-attention; in it, every attention's last transformer block."""
    chosen = []
    for stage in STAGES:
        in_stage = [name for name in cross_attention_layers(unet) if name.startswith(stage)]
        if not in_stage:
            continue
        block = _block_of(in_stage[-1])
        in_block = [name for name in in_stage if _block_of(name) == block]
        for attention in dict.fromkeys(_attention_of(name) for name in in_block):
            chosen.append([name for name in in_block if _attention_of(name) == attention][-1])
    return chosen


def _block_of(name: str) -> str:
    return name.split(".attentions.")[0]


def _attention_of(name: str) -> str:
    return name.split(".transformer_blocks.")[0]


def select_layers(unet, spec: str | Sequence[str]) -> list[str]:
    """`all`, `last-K` (the last K in forward order), `release`, or a list of `attn2` module names."""
    available = cross_attention_layers(unet)
    if isinstance(spec, str):
        if spec == "all":
            return available
        if spec == "release":
            return released_layers(unet)
        match = re.fullmatch(r"last-(\d+)", spec)
        if match and 0 < int(match.group(1)) <= len(available):
            return available[-int(match.group(1)) :]
        raise ValueError(f"layers: {spec!r} is not 'all', 'release', 'last-K' with 1 <= K <= {len(available)}, or a list of attn2 module names")
    unknown = [name for name in spec if name not in available]
    if unknown or not spec:
        raise ValueError(f"layers: {unknown[0] if unknown else 'an empty list'} is not a cross-attention layer of this UNet; it has {', '.join(available)}")
    return sorted(spec, key=_forward_position)


class AttentionStore:
    """What `reduce(logits, probabilities)` keeps of each captured layer, for one UNet call.

    With `stop_early`, recording the last of `layers` raises `StopUNet`."""

    def __init__(self, layers: Sequence[str], reduce: Callable[[torch.Tensor, torch.Tensor], Any], stop_early: bool) -> None:
        self.layers = list(layers)
        self.reduce = reduce
        self.stop_early = stop_early
        self.values: dict[str, Any] = {}

    def record(self, layer: str, logits: torch.Tensor, probabilities: torch.Tensor) -> None:
        self.values[layer] = self.reduce(logits, probabilities)
        if self.stop_early and len(self.values) == len(self.layers):
            raise StopUNet

    def take(self) -> list[Any]:
        """The recorded values in `layers` order; the store is then empty for the next call."""
        missing = [layer for layer in self.layers if layer not in self.values]
        if missing:
            raise RuntimeError(f"the UNet call did not reach the captured layer {missing[0]}")
        values, self.values = [self.values[layer] for layer in self.layers], {}
        return values


class CapturingCrossAttention:
    """A diffusers attention processor: explicit softmax attention (`softmax(QKᵀ·scale)V`) whose
    logits `[batch, heads, image tokens, text tokens]` and probabilities go to `store`.

    `key_value_shift(layer, hidden_states, key, value)`, when given, returns shifted keys and values
    (DSD's attention prompts)."""

    def __init__(self, layer: str, store: AttentionStore, key_value_shift: Callable | None = None) -> None:
        self.layer = layer
        self.store = store
        self.key_value_shift = key_value_shift

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        if attention_mask is not None:
            raise ValueError("CapturingCrossAttention does not support attention masks")
        residual = hidden_states
        spatial = hidden_states.ndim == 4
        if spatial:
            batch, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channels, height * width).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        query, key, value = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        if self.key_value_shift is not None:
            key, value = self.key_value_shift(self.layer, hidden_states, key, value)
        query, key, value = (tensor.unflatten(-1, (attn.heads, -1)).transpose(1, 2) for tensor in (query, key, value))
        logits = (query.float() @ key.float().transpose(-1, -2)) * attn.scale
        probabilities = logits.softmax(dim=-1)
        self.store.record(self.layer, logits, probabilities)
        output = (probabilities.to(value.dtype) @ value).transpose(1, 2).flatten(2)
        output = attn.to_out[1](attn.to_out[0](output))
        if spatial:
            output = output.transpose(1, 2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            output = output + residual
        return output / attn.rescale_output_factor


def install_capture(unet, layers: Sequence[str], store: AttentionStore, key_value_shift: Callable | None = None) -> dict:
    """Set capturing processors on `layers`; returns the previous processors (for `restore`)."""
    previous = dict(unet.attn_processors)
    chosen = {f"{layer}.processor" for layer in layers}
    unet.set_attn_processor({name: CapturingCrossAttention(name.removesuffix(".processor"), store, key_value_shift) if name in chosen else processor for name, processor in previous.items()})
    return previous
