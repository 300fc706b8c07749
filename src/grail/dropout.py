"""LoRA dropout that draws one random number per dropped element instead of one per element.

peft puts an ``nn.Dropout`` before every LoRA branch (p = 0.1 by default here, as in the paper's code). On CPU,
torch draws each element's Bernoulli from a Mersenne Twister, one element at a time: for the default's 210 LoRA
layers that was a quarter of a SmolLM2 training step, twenty times the cost of the rank-4 matmul it feeds
(``benchmarks/dropout_speed.py``). The positions a dropout zeroes are i.i.d. Bernoulli(p); the gaps between
consecutive zeroed positions are then i.i.d. Geometric(p), so drawing the gaps (one uniform number each, about
p · n of them) gives exactly the same distribution of masks from a tenth of the random numbers. The draws
come from torch's generator, so a seeded run is as reproducible as with ``nn.Dropout`` (with other masks).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def keep_scale(numel: int, p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """A flat mask of ``numel`` entries: 0 where dropped (each independently with probability ``p``), else
    1 / (1 - p), as ``nn.Dropout`` scales what it keeps."""
    if not 0 < p < 1:
        raise ValueError(f"dropout probability must be in (0, 1), got {p}")
    expected = numel * p
    per_draw = int(expected + 6 * math.sqrt(expected * (1 - p)) + 16)  # one draw nearly always covers numel
    to_gap = 1.0 / math.log1p(-p)
    positions, last = [], -1.0
    while last < numel:
        # Failures before the next drop: floor(log(U) / log(1 - p)) with U uniform on (0, 1] is Geometric(p).
        gaps = torch.floor(torch.log1p(-torch.rand(per_draw, device=device)) * to_gap)
        drawn = last + torch.cumsum(gaps + 1, 0)
        positions.append(drawn)
        last = drawn[-1].item()
    dropped = torch.cat(positions)
    dropped = dropped[:int(torch.searchsorted(dropped, float(numel)))].long()  # sorted: keep those inside
    return torch.full((numel,), 1 / (1 - p), device=device).index_fill_(0, dropped, 0.0)


class SparseDropout(nn.Module):
    """``nn.Dropout(p)`` with masks drawn by ``keep_scale``: the same distribution, far fewer random numbers."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * keep_scale(x.numel(), self.p, x.device).view_as(x).to(x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_sparse_dropout(model: nn.Module) -> int:
    """Replace every ``nn.Dropout`` inside the model's LoRA layers (peft's ``lora_dropout``); returns how many."""
    replaced = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, nn.ModuleDict):
            for name, dropout in dropouts.items():
                if type(dropout) is nn.Dropout and 0 < dropout.p < 1:
                    dropouts[name] = SparseDropout(dropout.p)
                    replaced += 1
    return replaced
