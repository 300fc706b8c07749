"""The precision attack: the merged unlearned model with its weights rounded to a lower precision.

Unlearning often moves weights by less than a quantization step, so rounding the unlearned weights can land on
the same grid points as the vanilla ones and bring the forgotten knowledge back (Zhang et al., arXiv 2410.16454:
4-bit quantization took retained forget knowledge from 21 % to 83 %). Each format is simulated as a round trip
(quantize, dequantize, compute in the model's own dtype), which is what a quantized kernel computes up to its
accumulation order, so it runs on a CPU:

- ``bfloat16`` / ``float16``: every floating-point weight cast there and back;
- ``int8``: every linear layer but the output head, symmetric round-to-nearest per output row (absmax, 127
  levels; LLM.int8's vector-wise weights without its outlier split);
- ``int4``: round-to-nearest per group of ``group_size`` consecutive weights, asymmetric (min to max, 16 levels:
  GPTQ / AWQ's grid without their error correction);
- ``nf4``: bitsandbytes' NormalFloat-4 per block of ``group_size`` (absmax scaling, the 16 quantiles of a
  normal distribution). On a CUDA device with bitsandbytes installed its own kernels do the round trip.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

NF4_LEVELS = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
])
"""bitsandbytes' NF4 code book (QLoRA, Dettmers et al. 2023)."""
FLOAT_FORMATS = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def _groups(weight: torch.Tensor, group_size: int) -> torch.Tensor:
    """The weights in rows of ``group_size`` consecutive entries (the last one padded with zeros)."""
    flat = weight.detach().float().flatten()
    pad = -flat.numel() % group_size
    return torch.cat([flat, flat.new_zeros(pad)]).view(-1, group_size)


def _ungroup(groups: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return groups.flatten()[: like.numel()].view(like.shape).to(like.dtype)


def round_trip(weight: torch.Tensor, fmt: str, group_size: int = 64) -> torch.Tensor:
    """``weight`` quantized to ``fmt`` and back, in its own dtype and shape."""
    if fmt in FLOAT_FORMATS:
        return weight.to(FLOAT_FORMATS[fmt]).to(weight.dtype)
    if fmt == "int8":
        w = weight.detach().float()
        scale = w.abs().amax(dim=-1, keepdim=True) / 127
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return ((w / scale).round().clamp(-127, 127) * scale).to(weight.dtype)
    if fmt == "int4":
        g = _groups(weight, group_size)
        low, high = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
        scale = (high - low) / 15
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return _ungroup(((g - low) / scale).round().clamp(0, 15) * scale + low, weight)
    if fmt == "nf4":
        if weight.is_cuda:
            try:
                import bitsandbytes.functional as bnb
            except ImportError:
                pass
            else:
                packed, state = bnb.quantize_4bit(weight.detach(), blocksize=group_size, quant_type="nf4")
                return bnb.dequantize_4bit(packed, state).to(weight.dtype)
        g = _groups(weight, group_size)
        absmax = g.abs().amax(-1, keepdim=True)
        absmax = torch.where(absmax > 0, absmax, torch.ones_like(absmax))
        levels = NF4_LEVELS.to(g.device)
        nearest = torch.bucketize(g / absmax, (levels[1:] + levels[:-1]) / 2)  # the closest level (ties: lower)
        return _ungroup(levels[nearest] * absmax, weight)
    raise ValueError(f"unknown precision {fmt!r}; known: bfloat16, float16, int8, int4, nf4")


def merged_copy(model: nn.Module) -> nn.Module:
    """A copy of the model with any LoRA adapter merged into the base weights (the model a user would ship)."""
    merged = copy.deepcopy(model)
    if hasattr(merged, "merge_and_unload"):  # a peft model
        merged = merged.merge_and_unload()
    return merged.eval()


@torch.no_grad()
def quantized_copy(model: nn.Module, fmt: str, group_size: int = 64) -> nn.Module:
    """The merged model with its weights rounded to ``fmt`` (float formats: every floating-point parameter;
    integer formats: every linear layer's weight but the output head's, as quantization libraries do)."""
    merged = merged_copy(model)
    head = merged.get_output_embeddings() if hasattr(merged, "get_output_embeddings") else None
    if fmt in FLOAT_FORMATS:
        for param in merged.parameters():
            if param.is_floating_point():
                param.copy_(round_trip(param, fmt))
        return merged
    for module in merged.modules():
        if isinstance(module, nn.Linear) and module is not head:
            module.weight.copy_(round_trip(module.weight, fmt, group_size))
    return merged
