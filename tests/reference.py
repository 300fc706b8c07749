"""Naive implementations of stages 1 and 2, slow on purpose: what the tests check the real code against (tests/ is on
sys.path: pytest puts conftest.py's folder there) and what ``benchmarks/bench.py`` measures it against.

- Stage 1: one backward per row (batch size 1), |g| read from each parameter's .grad.
- Stage 2: the same rule as ``localize`` with the top-k index lists of each tensor turned into Python sets,
  the set algebra done on those sets, and the masks written index by index.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from functools import reduce
from operator import and_, or_
from typing import Literal

import torch
from torch import nn

from grail.batching import Encoded, example_losses
from grail.config import LocalizeConfig, ModelConfig
from grail.models import canonical_name, load_base, make_trainable


def lora_with_trained_b(config: ModelConfig, seed: int = 0) -> tuple[nn.Module, object]:
    """The model with LoRA whose B is drawn small and non-zero, as after fine-tuning (a fresh LoRA has B = 0, so
    A gets no gradient): what tests and benchmarks measure gradients on. Returns (model, tokenizer)."""
    base, tokenizer = load_base(config)
    torch.manual_seed(seed)
    model = make_trainable(base, config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)
    return model, tokenizer


def loop_abs_mean(model: nn.Module, rows: Sequence[Encoded], pad_id: int, device: str = "cpu",
                  absolute: bool = True) -> dict[str, torch.Tensor]:
    """Mean over rows of |grad| (or, ``absolute=False``, of grad) of every trainable parameter, one row per
    backward."""
    model.eval()
    params = {canonical_name(n): p for n, p in model.named_parameters() if p.requires_grad}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for row in rows:
        model.zero_grad(set_to_none=True)
        example_losses(model, [row], pad_id, device).sum().backward()
        for n, p in params.items():
            total[n] += p.grad.abs() if absolute else p.grad
    model.zero_grad(set_to_none=True)
    return {n: t / len(rows) for n, t in total.items()}


def set_localize(importance: dict[str, dict[str, torch.Tensor]], domains: list[str], config: LocalizeConfig,
                 selection: Literal["torch", "python"] = "torch") -> dict[str, dict[str, torch.Tensor]]:
    """``localize`` with Python sets of flat indices. The top-k indices come from ``torch.topk`` (``torch``) or,
    with no tensor code at all, from ``heapq.nlargest`` over the scores as a list (``python``)."""
    def top(dataset: str, name: str, percent: float) -> set[int]:
        scores = importance[dataset][name].flatten()
        k = round(scores.numel() * percent / 100.0)
        if not k:
            return set()
        if selection == "torch":
            return set(scores.topk(k, sorted=False).indices.tolist())
        values = scores.tolist()
        return set(heapq.nlargest(k, range(len(values)), key=values.__getitem__))

    def as_mask(indices: set[int], like: torch.Tensor) -> torch.Tensor:
        flat = [False] * like.numel()
        for index in indices:
            flat[index] = True
        return torch.tensor(flat, dtype=torch.bool).view(like.shape)

    masks: dict[str, dict[str, torch.Tensor]] = {"op_ur": {}, "op_rr": {}, "frozen": {}}
    for name, like in importance[f"{domains[0]}/forget"].items():
        forget_any = reduce(or_, (top(f"{d}/forget", name, config.k_ur) for d in domains))
        retain_any = reduce(or_, (top(f"{d}/retain", name, config.k_ur) for d in domains))
        op_ur = forget_any & retain_any
        op_rr = reduce(and_, (top(f"{d}/retain", name, config.k_rr) for d in domains))
        frozen = (op_ur if config.use_op_ur else set()) | (op_rr if config.use_op_rr else set())
        masks["op_ur"][name], masks["op_rr"][name], masks["frozen"][name] = (
            as_mask(op_ur, like), as_mask(op_rr, like), as_mask(frozen, like))
    return masks
