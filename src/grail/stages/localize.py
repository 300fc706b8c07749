"""Stage 2: adaptive parameter-wise localization (paper III-D, Eq. 4, Algorithm 1).

A "layer" is one parameter tensor. T_k(D_x) is the top k % of that tensor's entries by importance for
dataset D_x, k relative to the tensor's size, so every tensor contributes in proportion to its size.
- OP-UR = (union over domains of T_kUR(forget)) & (union over domains of T_kUR(retain)):
  entries important both to what must go and to what must stay.
- OP-RR = intersection over domains of T_kRR(retain): entries every domain's retention relies on.
- F (frozen) = OP-UR | OP-RR (either may be switched off for the ablations).
"""

from __future__ import annotations

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


class Localizer:
    """Algorithm 1's set operations, fed one dataset's importance at a time.

    Each dataset's scores are reduced to its top-k masks as soon as they arrive, so only one dataset's scores
    need to exist at once (stage 1 in ``one_dataset_at_a_time`` mode, for full-parameter runs on big models):
    the running state is three bool masks per tensor.
    """

    def __init__(self, domains: list[str], config: LocalizeConfig) -> None:
        self.domains = domains
        self.config = config
        self.forget_any: dict[str, torch.Tensor] = {}  # union over domains of T_kUR(forget)
        self.retain_any: dict[str, torch.Tensor] = {}  # union over domains of T_kUR(retain)
        self.retain_all: dict[str, torch.Tensor] = {}  # intersection over domains of T_kRR(retain)
        self.seen: set[str] = set()

    def add(self, dataset: str, scores: dict[str, torch.Tensor]) -> None:
        """Take ``<domain>/<forget|retain>``'s importance scores into the running sets."""
        domain, scope = dataset.rsplit("/", 1)
        if domain not in self.domains or scope not in ("forget", "retain"):
            return
        self.seen.add(dataset)
        for name, tensor in scores.items():
            top_ur = top_k_mask(tensor, self.config.k_ur)
            union = self.forget_any if scope == "forget" else self.retain_any
            union[name] = union[name] | top_ur if name in union else top_ur
            if scope == "retain":
                top_rr = top_k_mask(tensor, self.config.k_rr)
                self.retain_all[name] = self.retain_all[name] & top_rr if name in self.retain_all else top_rr

    def masks(self) -> dict[str, dict[str, torch.Tensor]]:
        """{"op_ur" | "op_rr" | "frozen": {parameter name: bool mask}}."""
        needed = {f"{d}/{s}" for d in self.domains for s in ("forget", "retain")}
        missing = sorted(needed - self.seen)
        if missing:
            raise ValueError(f"localization needs the importance of every dataset; missing: {missing}")
        masks: dict[str, dict[str, torch.Tensor]] = {kind: {} for kind in MASK_KINDS}
        for name in self.forget_any:
            op_ur = self.forget_any[name] & self.retain_any[name]
            op_rr = self.retain_all[name]
            frozen = torch.zeros_like(op_ur)
            if self.config.use_op_ur:
                frozen |= op_ur
            if self.config.use_op_rr:
                frozen |= op_rr
            masks["op_ur"][name], masks["op_rr"][name], masks["frozen"][name] = op_ur, op_rr, frozen
        return masks


def localize(importance: dict[str, dict[str, torch.Tensor]], domains: list[str],
             config: LocalizeConfig) -> dict[str, dict[str, torch.Tensor]]:
    """{"op_ur" | "op_rr" | "frozen": {parameter name: bool mask}} from the importance of each dataset.

    ``importance`` is keyed by dataset name ``<domain>/<forget|retain>``, as stage 1 returns it.
    """
    localizer = Localizer(domains, config)
    for dataset, scores in importance.items():
        localizer.add(dataset, scores)
    return localizer.masks()


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
