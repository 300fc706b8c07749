"""Stage 2's per-tensor top-k masks when each process holds only a shard of each tensor (FSDP2).

Under ``torch.distributed.fsdp.fully_shard`` a parameter is split by rows (DTensor ``Shard(0)``: ``torch.chunk``
over dim 0, so the last ranks may hold fewer rows or none), and its importance scores are split alike. Gathering a
7B model's scores into one process to take each tensor's top k % is what sharding is there to avoid, so the k-th
largest score of each tensor is found across the shards instead, and every process marks its own entries.

The rule, in one process and in many (so both give the same mask, entry for entry):
- k = round(numel * percent / 100), as ``localize.top_k_mask``;
- the mask holds the k highest scores; among entries equal to the k-th highest, those with the lower flat index
  (row-major position in the whole tensor) come first;
- NaN counts as -inf (a NaN score is never preferred to a real one; NaNs and -infs tie), and -0.0 equals +0.0.
Where scores have no ties this is exactly the set ``localize.top_k_mask`` (``torch.topk``) picks.

The distributed selection is a radix select on integer keys: a float's bits, mapped to an integer that orders
(and ties) as the float does. One all-reduce finds each tensor's smallest and largest key over all processes;
then each round splits each tensor's key range into at most 257 aligned blocks, every process counts its
candidates per block, one all-reduce sums the counts of all tensors at once, and every process keeps the block
that holds the k-th largest. The range's bit length drops by 8 a round: after at most 4 rounds (8 for float64)
it is one key, the k-th largest. One all-gather of how many entries equal to it each process holds then lets each
take its share of those, in flat-index order. That is exact (integer counts, no float sums) and costs at most 5
small all-reduces, 1 all-gather and 1 object all-gather (a check that the processes agree on the tensors and their
shards) for any number of tensors and processes.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.distributed as dist

from grail.sharding import row_range

RADIX_BITS = 8  # each round cuts a key range's bit length by 8: at most 257 blocks a tensor to count


def top_k_count(numel: int, percent: float) -> int:
    """How many entries a top-k % mask of ``numel`` entries holds (the same rounding as ``localize.top_k_mask``)."""
    return round(numel * percent / 100.0)


def _comparable(scores: torch.Tensor) -> torch.Tensor:
    """Scores as floats with NaN replaced by -inf, so that every comparison below is a total order."""
    if not scores.is_floating_point():
        raise TypeError(f"top-k masks take floating-point scores, not {scores.dtype}")
    return torch.nan_to_num(scores, nan=float("-inf"), posinf=float("inf"), neginf=float("-inf"))


def top_k_mask_exact(scores: torch.Tensor, percent: float) -> torch.Tensor:
    """Boolean mask of the top ``percent`` % of one whole tensor's entries; ties at the threshold go to the lower
    flat index (the rule in the module docstring), so the mask is fully determined by the scores."""
    n = scores.numel()
    k = top_k_count(n, percent)
    if k <= 0 or k >= n:
        return torch.full(scores.shape, k > 0, dtype=torch.bool, device=scores.device)
    flat = _comparable(scores.reshape(-1))
    threshold = flat.kthvalue(n - k + 1).values  # the k-th largest
    mask = flat > threshold
    ties = (flat == threshold).nonzero().squeeze(1)  # ascending flat index
    mask[ties[:k - int(mask.sum())]] = True
    return mask.view(scores.shape)


def row_shard(tensor: torch.Tensor, rank: int, world_size: int) -> tuple[torch.Tensor, int]:
    """This rank's rows of ``tensor`` (``sharding.row_range``), and their flat offset in the whole tensor."""
    rows = tensor.reshape(1, -1) if tensor.dim() == 0 else tensor
    mine = row_range(rows.shape[0], rank, world_size)
    return rows[mine], mine.start * (rows[0].numel() if rows.shape[0] else 0)


def _keys(scores: torch.Tensor, wide: bool) -> torch.Tensor:
    """Integer keys that order (and tie) as the scores do: int32 of float32 bits, or int64 of float64 bits.

    A non-negative float's bits, read as a signed integer, grow with the float; a negative float's grow with its
    magnitude, so flipping all but the sign bit reverses them. Adding +0.0 first makes -0.0 +0.0 (IEEE 754), so
    that equal floats have equal keys."""
    x = _comparable(scores.reshape(-1).to(torch.float64 if wide else torch.float32)) + 0.0
    bits = x.view(torch.int64 if wide else torch.int32)
    return bits ^ ((bits >> (bits.element_size() * 8 - 1)) & torch.iinfo(bits.dtype).max)


def _all_reduce(tensor: torch.Tensor, group: dist.ProcessGroup | None,
                op: dist.ReduceOp.RedOpType = dist.ReduceOp.SUM) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=op, group=group)
    return tensor


def _all_gather(tensor: torch.Tensor, group: dist.ProcessGroup | None) -> torch.Tensor:
    """Every process's ``tensor`` stacked in rank order (just ``tensor`` with one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return tensor.unsqueeze(0)
    out = [torch.empty_like(tensor) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, tensor, group=group)
    return torch.stack(out)


def _negated_min_and_max(keys: torch.Tensor) -> list[int]:
    """[-min, max] of the keys, or what loses every MAX for no keys (an empty shard)."""
    if not keys.numel():
        return [-(1 << 63) + 1, -(1 << 63)]
    low, high = keys.aminmax()
    return [-int(low), int(high)]


def _radix_select(keys: list[torch.Tensor], ks: list[int], group: dist.ProcessGroup | None
                  ) -> tuple[list[int], list[int]]:
    """For each tensor (this process's keys; ``ks``: the whole tensor's k, 0 < k < numel), the key of its k-th
    largest entry over all processes, and how many entries equal to it the whole tensor's mask takes (the rest
    of the k are above it).

    Each round splits every tensor's range of possible keys [lo, hi] into at most 257 aligned blocks of 2**shift
    keys, counts the candidates in each (one all-reduce for all tensors), and keeps the block that holds the
    k-th largest. The range's bit length drops by 8 a round: float32 keys take at most 4 rounds, float64 ones 8."""
    device = keys[0].device
    extremes = torch.tensor([_negated_min_and_max(k) for k in keys], dtype=torch.int64, device=device)
    extremes = _all_reduce(extremes, group, dist.ReduceOp.MAX).tolist()  # [-lo, hi] over all processes
    lo, hi = [-e[0] for e in extremes], [e[1] for e in extremes]
    needed = ks.copy()  # still to take from the candidates (those in [lo, hi])
    candidates = list(keys)
    while True:
        active = [t for t in range(len(keys)) if lo[t] < hi[t]]
        if not active:
            return lo, needed
        shifts = [max(0, (hi[t] - lo[t]).bit_length() - RADIX_BITS) for t in active]
        blocks = [(candidates[t] >> s) - (lo[t] >> s) for t, s in zip(active, shifts)]  # 0..256
        counts = torch.stack([torch.bincount(b, minlength=(1 << RADIX_BITS) + 1) for b in blocks])
        at_or_above = _all_reduce(counts, group).flip(1).cumsum(1).flip(1)  # [t, b]: in block b or above
        wanted = torch.tensor([needed[t] for t in active], dtype=torch.int64, device=device)
        chosen = (at_or_above >= wanted[:, None]).sum(1) - 1  # the block holding the needed-th largest
        above = torch.cat([at_or_above, torch.zeros_like(at_or_above[:, :1])], 1).gather(1, chosen[:, None] + 1)
        for i, (t, s, block, taken) in enumerate(zip(active, shifts, chosen.tolist(), above.squeeze(1).tolist())):
            start = ((lo[t] >> s) + block) << s
            lo[t], hi[t] = max(lo[t], start), min(hi[t], start + (1 << s) - 1)
            needed[t] -= taken
            candidates[t] = candidates[t][blocks[i] == block]


def _check_layout(layouts: list[list[tuple]], names: list[str]) -> None:
    """Every process passed the same tensors (names, sizes, in the same order), and their shards tile each tensor:
    a mismatch would otherwise pair one process's counts with another tensor's, silently."""
    if any(layout[0] != layouts[0][0] for layout in layouts):
        raise ValueError("sharded top-k: the processes passed different tensors (names or total sizes differ)")
    for t, name in enumerate(names):
        total = layouts[0][0][t][1]
        shards = sorted(layout[1][t] for layout in layouts if layout[1][t][1] > 0)
        ends = [0] + [offset + numel for offset, numel in shards]
        if [offset for offset, _ in shards] != ends[:-1] or ends[-1] != total:
            raise ValueError(f"sharded top-k: the shards (offset, numel) {shards} of {name!r} do not tile its "
                             f"{total} entries")


def sharded_top_k_masks(local_scores: Mapping[str, torch.Tensor], percent: float, total_numels: Mapping[str, int],
                        offsets: Mapping[str, int], group: dist.ProcessGroup | None = None
                        ) -> dict[str, torch.Tensor]:
    """Each process's part of ``top_k_mask_exact(whole tensor, percent)`` for many tensors, with at most 5
    all-reduces (9 for float64 scores) and 2 all-gathers, all of a few numbers per tensor: no tensor is gathered.

    Every process passes the same names in the same order; ``local_scores[name]`` is its shard, a contiguous run
    of the whole tensor's row-major entries (a block of rows: see ``row_shard``; it may be empty), which starts at
    flat index ``offsets[name]`` of the ``total_numels[name]`` entries. The masks have the shards' shapes. Without
    a process group (one process) each shard must be its whole tensor, and ``top_k_mask_exact`` gives the mask.
    """
    names = list(local_scores)
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) == 1:
        for name in names:
            if offsets[name] != 0 or local_scores[name].numel() != total_numels[name]:
                raise ValueError(f"sharded top-k without a process group: {name!r} is a shard, not a whole tensor")
        return {name: top_k_mask_exact(local_scores[name], percent) for name in names}
    if not names:
        return {}
    for scores in local_scores.values():
        if not scores.is_floating_point():
            raise TypeError(f"top-k masks take floating-point scores, not {scores.dtype}")

    layout = ([(name, total_numels[name]) for name in names],
              [(offsets[name], local_scores[name].numel()) for name in names],
              any(s.dtype == torch.float64 for s in local_scores.values()))
    layouts: list = [None] * dist.get_world_size(group)
    dist.all_gather_object(layouts, layout, group=group)
    _check_layout(layouts, names)
    wide = any(layout[2] for layout in layouts)  # float64 anywhere: compare every tensor in float64 (lossless)

    masks = {}
    selected = []  # the tensors whose mask is neither empty nor full
    for name in names:
        k = top_k_count(total_numels[name], percent)
        if 0 < k < total_numels[name]:
            selected.append(name)
        else:
            masks[name] = torch.full(local_scores[name].shape, k > 0, dtype=torch.bool,
                                     device=local_scores[name].device)
    if not selected:
        return masks
    keys = [_keys(local_scores[name], wide) for name in selected]
    thresholds, needed = _radix_select(keys, [top_k_count(total_numels[n], percent) for n in selected], group)
    above = [k > threshold for k, threshold in zip(keys, thresholds)]
    ties = [(k == threshold).nonzero().squeeze(1) for k, threshold in zip(keys, thresholds)]  # ascending index

    # The entries equal to the k-th largest go to the lowest flat indices: this process takes what the processes
    # holding earlier shards (ordered by offset, then rank) left of ``needed``.
    device = keys[0].device
    held = _all_gather(torch.tensor([t.numel() for t in ties], dtype=torch.int64, device=device), group)
    me = dist.get_rank(group)
    position = {name: t for t, name in enumerate(names)}
    starts = torch.tensor([[layout[1][position[n]][0] for n in selected] for layout in layouts], device=device)
    ranks = torch.arange(len(layouts), device=device)[:, None]
    earlier = (starts < starts[me]) | ((starts == starts[me]) & (ranks < me))
    needed = torch.tensor(needed, dtype=torch.int64, device=device)
    takes = (needed - (held * earlier).sum(0)).clamp(min=0).minimum(held[me]).tolist()
    for t, name in enumerate(selected):
        above[t][ties[t][:takes[t]]] = True
        masks[name] = above[t].view(local_scores[name].shape)
    return {name: masks[name] for name in names}


def sharded_top_k_mask(local_scores: torch.Tensor, percent: float, total_numel: int, offset: int,
                       group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """This process's part of ``top_k_mask_exact(whole tensor, percent)``, its shard starting at flat index
    ``offset`` of the whole tensor's ``total_numel`` entries (``sharded_top_k_masks`` for one tensor)."""
    return sharded_top_k_masks({"": local_scores}, percent, {"": total_numel}, {"": offset}, group)[""]
