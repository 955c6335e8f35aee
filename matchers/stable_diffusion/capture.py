"""Reading a diffusers UNet's cross-attention: which `attn2` layers exist, in forward order; an
attention processor that keeps a readout of their logits and probabilities; and a scoped capture
that installs such processors on the chosen layers and restores the previous ones on exit.

Every other layer keeps the processor it had (PyTorch SDPA, or xformers where enabled).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

STAGES = ("down_blocks", "mid_block", "up_blocks")

Readout = Callable[[torch.Tensor, torch.Tensor], Any]
"""What a capturing processor keeps of a layer: `readout(logits, probabilities)`, both
`[batch, heads, image tokens, text tokens]` (probabilities are the softmax of the logits)."""


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


LAYER_SPEC = re.compile(r"all|release|last-[1-9]\d*")


def check_layer_spec(spec: str | Sequence[str]) -> str | None:
    """Why `spec` cannot name layers of any UNet, or None; the names themselves are checked
    against the model once it is loaded (`select_layers`)."""
    if isinstance(spec, str):
        return None if LAYER_SPEC.fullmatch(spec) else f"{spec!r} is not 'all', 'release', 'last-K' (K >= 1) or a list of attn2 module names"
    return None if spec else "an empty list names no layer"


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


UNSUPPORTED_PARTS = ("spatial_norm", "norm_q", "norm_k")  # parts of diffusers' Attention the capture does not compute: refused, never skipped


class CapturingCrossAttention(torch.nn.Module):
    """A diffusers attention processor for one `attn2` layer: explicit softmax attention
    (`softmax(QKᵀ·scale)V`) that keeps `readout(logits, probabilities)` of its last call.

    A module, so subclasses can own learned tensors (DSD's prompts) that `shift_keys_values`
    adds to the keys and values; diffusers registers a module processor under its layer."""

    def __init__(self, readout: Readout) -> None:
        super().__init__()
        self.readout = readout
        self.kept: Any = None

    def shift_keys_values(self, hidden_states: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values `[batch, text tokens, inner]` as the layer attends to them."""
        return key, value

    def take(self) -> Any:
        """The readout of the last call; the processor then holds nothing until the next one."""
        if self.kept is None:
            raise RuntimeError("the UNet call did not reach a captured cross-attention layer")
        kept, self.kept = self.kept, None
        return kept

    def forward(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
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
        key, value = self.shift_keys_values(hidden_states, key, value)
        query, key, value = (tensor.unflatten(-1, (attn.heads, -1)).transpose(1, 2) for tensor in (query, key, value))
        logits = (query.float() @ key.float().transpose(-1, -2)) * attn.scale
        probabilities = logits.softmax(dim=-1)
        self.kept = self.readout(logits, probabilities)
        output = (probabilities.to(value.dtype) @ value).transpose(1, 2).flatten(2)
        output = attn.to_out[1](attn.to_out[0](output))
        if spatial:
            output = output.transpose(1, 2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            output = output + residual
        return output / attn.rescale_output_factor


class CrossAttentionCapture:
    """`with capture:` refuses layers with a part the capture does not compute (`UNSUPPORTED_PARTS`),
    sets `processors` (layer name → capturing processor) on their layers and, on exit, puts back
    every processor the UNet had (scopes nest). `take()` returns the readouts of the last UNet
    call, in the layers' forward order."""

    def __init__(self, unet, processors: Mapping[str, CapturingCrossAttention]) -> None:
        self.unet = unet
        self.layers = sorted(processors, key=_forward_position)
        self.processors = dict(processors)
        self._saved: list[dict[str, Any]] = []  # one entry per enclosing `with`: scopes nest

    def __enter__(self) -> CrossAttentionCapture:
        for layer in self.layers:
            attention = self.unet.get_submodule(layer)
            unsupported = [part for part in UNSUPPORTED_PARTS if getattr(attention, part, None) is not None]
            if unsupported:
                raise ValueError(f"CapturingCrossAttention does not apply {', '.join(unsupported)}, which this UNet's attention layers have (Stable Diffusion 1.x and 2.x have none)")
        saved = dict(self.unet.attn_processors)
        # set_attn_processor wants an entry for every layer, and empties the dict it is given.
        self.unet.set_attn_processor({name: self.processors.get(name.removesuffix(".processor"), processor) for name, processor in saved.items()})
        self._saved.append(saved)
        return self

    def __exit__(self, *exception) -> None:
        self.unet.set_attn_processor(dict(self._saved.pop()))

    def take(self) -> list[Any]:
        return [self.processors[layer].take() for layer in self.layers]

    def clear(self) -> None:
        """Forget every kept readout, so `take` after the next call sees that call's only."""
        for processor in self.processors.values():
            processor.kept = None
