"""Stage 2: adaptive parameter-wise localization (paper III-D, Eq. 4, Algorithm 1).

A "layer" is one parameter tensor. T_k(D_x) is the top k % of that tensor's entries by importance for
dataset D_x, k relative to the tensor's size, so every tensor contributes in proportion to its size.
- OP-UR = (union over domains of T_kUR(forget)) & (union over domains of T_kUR(retain)):
  entries important both to what must go and to what must stay.
- OP-RR = intersection over domains of T_kRR(retain): entries every domain's retention relies on.
- F (frozen) = OP-UR | OP-RR (either may be switched off for the ablations).
"""

from __future__ import annotations

from functools import reduce
from operator import and_, or_

import torch

from grail.config import LocalizeConfig

MASK_KINDS = ("op_ur", "op_rr", "frozen")


def top_k_mask(scores: torch.Tensor, percent: float) -> torch.Tensor:
    """Boolean mask of the round(percent % of numel) highest-scoring entries (ties broken by topk)."""
    k = round(scores.numel() * percent / 100.0)
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if k > 0:
        mask[scores.flatten().topk(k, sorted=False).indices] = True
    return mask.view(scores.shape)


def localize(importance: dict[str, dict[str, torch.Tensor]], domains: list[str],
             config: LocalizeConfig) -> dict[str, dict[str, torch.Tensor]]:
    """{"op_ur" | "op_rr" | "frozen": {parameter name: bool mask}} from the importance of each dataset.

    ``importance`` is keyed by dataset name ``<domain>/<forget|retain>``, as stage 1 returns it.
    """
    params = list(importance[f"{domains[0]}/forget"])
    masks: dict[str, dict[str, torch.Tensor]] = {kind: {} for kind in MASK_KINDS}
    def top(domain: str, scope: str, name: str, percent: float) -> torch.Tensor:
        return top_k_mask(importance[f"{domain}/{scope}"][name], percent)

    for name in params:
        forget_any = reduce(or_, (top(d, "forget", name, config.k_ur) for d in domains))
        retain_any = reduce(or_, (top(d, "retain", name, config.k_ur) for d in domains))
        op_ur = forget_any & retain_any
        op_rr = reduce(and_, (top(d, "retain", name, config.k_rr) for d in domains))
        frozen = torch.zeros_like(op_ur)
        if config.use_op_ur:
            frozen |= op_ur
        if config.use_op_rr:
            frozen |= op_rr
        masks["op_ur"][name], masks["op_rr"][name], masks["frozen"][name] = op_ur, op_rr, frozen
    return masks


def flatten_masks(masks: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The on-disk layout of masks.safetensors: keys ``op_ur.<param>``, ``op_rr.<param>``, ``frozen.<param>``."""
    return {f"{kind}.{name}": mask for kind, by_name in masks.items() for name, mask in by_name.items()}


def unflatten_masks(flat: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    masks: dict[str, dict[str, torch.Tensor]] = {kind: {} for kind in MASK_KINDS}
    for key, mask in flat.items():
        kind, name = key.split(".", 1)
        masks[kind][name] = mask
    return masks


def memflex_selection(forget_grad: dict[str, torch.Tensor], retain_grad: dict[str, torch.Tensor],
                      mu: float = 0.92, sigma: float = 6e-4) -> dict[str, bool]:
    """Memflex's tensor-level localization for one domain (the baseline GRAIL refines): a tensor trains iff its
    mean signed forget and retain gradients point apart (cosine < mu) and the forget gradient is large
    (mean |G_U| > sigma). Reference values mu 0.92, sigma 6e-4."""
    selected = {}
    for name, g_u in forget_grad.items():
        cosine = torch.nn.functional.cosine_similarity(g_u.flatten(), retain_grad[name].flatten(), dim=0)
        selected[name] = bool(cosine < mu) and bool(g_u.abs().mean() > sigma)
    return selected


def memflex_frozen(selections: list[dict[str, bool]], shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """Combine per-domain selections (a tensor trains if any domain selects it) into whole-tensor frozen masks."""
    return {name: torch.full(shape, not any(s[name] for s in selections), dtype=torch.bool)
            for name, shape in shapes.items()}
