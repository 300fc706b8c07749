"""Stage 2: adaptive parameter-wise localization (paper III-D, Eq. 4, Algorithm 1).

A "layer" is one parameter tensor. T_k(D_x) is the top k % of that tensor's entries by importance for
dataset D_x, k relative to the tensor's size, so every tensor contributes in proportion to its size.
- OP-UR = (union over domains of T_kUR(forget)) & (union over domains of T_kUR(retain)):
  entries important both to what must go and to what must stay.
- OP-RR = intersection over domains of T_kRR(retain): entries every domain's retention relies on.
- F (frozen) = OP-UR | OP-RR (either may be switched off for the ablations).
"""

from __future__ import annotations

from pathlib import Path

import torch

from grail import io
from grail.config import LocalizeConfig
from grail.stages.sharded_topk import sharded_top_k_masks, top_k_mask_exact

MASK_KINDS = ("op_ur", "op_rr", "frozen")


def top_k_mask(scores: torch.Tensor, percent: float) -> torch.Tensor:
    """Boolean mask of the round(percent % of numel) highest-scoring entries, ties at the threshold to the lower flat
    index: the rule ``sharded_topk`` also follows when each process holds only a shard of the tensor, so one process
    and many give the same mask entry for entry."""
    return top_k_mask_exact(scores, percent)


class Localizer:
    """Algorithm 1's set operations, fed one dataset's importance at a time.

    Each dataset's scores are reduced to its top-k masks as soon as they arrive, so only one dataset's scores
    need to exist at once (stage 1 in ``one_dataset_at_a_time`` mode, for full-parameter runs on big models):
    the running state is three bool masks per tensor.
    """

    def __init__(self, domains: list[str], config: LocalizeConfig,
                 shards: dict[str, tuple[int, int]] | None = None) -> None:
        """``shards``: scores that are this process's row shards of each tensor (stage 1 on a model sharded by
        FSDP2), as {parameter name: (the whole tensor's numel, the shard's flat offset in it)}; the top-k is then
        found across the processes (``sharded_topk``), the same entries as one process's, and the masks are
        shards too."""
        self.domains = domains
        self.config = config
        self.shards = shards
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
        tops_ur = self._top_k(scores, self.config.k_ur)
        tops_rr = self._top_k(scores, self.config.k_rr) if scope == "retain" else {}
        for name, top_ur in tops_ur.items():
            union = self.forget_any if scope == "forget" else self.retain_any
            union[name] = union[name] | top_ur if name in union else top_ur
            if scope == "retain":
                top_rr = tops_rr[name]
                self.retain_all[name] = self.retain_all[name] & top_rr if name in self.retain_all else top_rr

    def _top_k(self, scores: dict[str, torch.Tensor], percent: float) -> dict[str, torch.Tensor]:
        if self.shards is None:
            return {name: top_k_mask(tensor, percent) for name, tensor in scores.items()}
        return sharded_top_k_masks(scores, percent, {n: self.shards[n][0] for n in scores},
                                   {n: self.shards[n][1] for n in scores})

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


# masks.safetensors: keys ``op_ur.<param>``, ``op_rr.<param>``, ``frozen.<param>``, each mask bit-packed (1 bit per
# entry, not torch's 1 byte per bool: a full-weight model's masks shrink from hundreds of MB to tens). The metadata
# says so (``layout: packbits``) and records each key's shape ("4,8"; "" for a 0-d mask), which the bytes cannot hold.
# Run folders written before hold plain bool tensors and load as they are.
PACKED_LAYOUT = "packbits"
_BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)  # big-endian within a byte, as numpy.packbits


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A bool mask as uint8 bytes of 8 entries each, in row-major order, the last byte padded with zeros."""
    flat = mask.flatten().to(torch.uint8)
    flat = torch.nn.functional.pad(flat, (0, -flat.numel() % 8))
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=mask.device)
    return (flat.view(-1, 8) * weights).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The bool mask of ``shape`` that ``pack_bits`` packed into ``packed`` (the padding bits dropped)."""
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=packed.device)
    bits = (packed.view(-1, 1) & weights) != 0
    return bits.flatten()[:shape.numel()].view(shape)


def save_masks(path: Path, masks: dict[str, dict[str, torch.Tensor]]) -> None:
    """Write {"op_ur" | "op_rr" | "frozen": {parameter: bool mask}} bit-packed (atomically, as every run file)."""
    packed: dict[str, torch.Tensor] = {}
    metadata = {"layout": PACKED_LAYOUT}
    for kind, by_name in masks.items():
        for name, mask in by_name.items():
            packed[f"{kind}.{name}"] = pack_bits(mask)
            metadata[f"{kind}.{name}"] = ",".join(str(n) for n in mask.shape)
    io.save_tensors(path, packed, metadata)


def load_masks(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The masks ``save_masks`` wrote, or a run folder's older file of bool tensors, as bool masks on the CPU.

    A packed entry whose shape is not recorded, or whose bytes do not fit it, is an ``io.UnreadableFileError`` naming
    the file and the key: the masks decide what stage 3 may move, so a guess would be worse than a refusal."""
    flat = io.load_tensors(path)
    metadata = io.load_metadata(path)
    masks: dict[str, dict[str, torch.Tensor]] = {kind: {} for kind in MASK_KINDS}
    for key, stored in flat.items():
        kind, name = key.split(".", 1)
        if stored.dtype == torch.bool:  # the layout before bit-packing
            masks[kind][name] = stored
            continue
        if metadata.get("layout") != PACKED_LAYOUT or key not in metadata:
            raise io.UnreadableFileError(f"{path}: mask {key!r} is packed ({stored.dtype}) but the file records no "
                                         "shape for it; damaged or not written by grail?")
        shape = torch.Size(int(n) for n in metadata[key].split(",") if n)
        if stored.dtype != torch.uint8 or stored.numel() != -(-shape.numel() // 8):
            raise io.UnreadableFileError(f"{path}: mask {key!r} holds {stored.numel()} {stored.dtype} entries, "
                                         f"not the packed bits of shape {tuple(shape)}; damaged?")
        masks[kind][name] = unpack_bits(stored, shape)
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
