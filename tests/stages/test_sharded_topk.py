"""Stage 2's top-k masks across row shards: one rule (ties to the lower flat index), one mask however the tensor
is split. Single-process checks against a brute-force sort; then 2 and 4 gloo processes, each holding a block of
rows (uneven splits, empty shards), against the single-process mask."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from grail.stages.sharded_topk import (
    _keys,
    _radix_select,
    row_shard,
    sharded_top_k_mask,
    sharded_top_k_masks,
    top_k_count,
    top_k_mask_exact,
)

PERCENTS = [0.0, 1.0, 10.0, 20.0, 33.3, 50.0, 99.0, 100.0]


def brute_force(scores: torch.Tensor, percent: float) -> torch.Tensor:
    """The rule spelled out: a stable sort by descending score (NaN as -inf), the first k entries."""
    flat = scores.flatten().double()
    flat = torch.where(flat.isnan(), float("-inf"), flat)
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    mask[torch.argsort(-flat, stable=True)[:top_k_count(flat.numel(), percent)]] = True
    return mask.view(scores.shape)


def scores_of(kind: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Scores with the ties and special values stage 2 may meet."""
    g = torch.Generator().manual_seed(seed)
    if kind == "few_values":  # many ties at every threshold
        return torch.randint(-2, 3, shape, generator=g).float()
    if kind == "zeros":
        return torch.zeros(shape)
    if kind == "negative":
        return -torch.rand(shape, generator=g) * 1e-3
    if kind == "special":  # NaN, infinities, signed zeros among ordinary values
        x = torch.randint(-2, 3, shape, generator=g).float().flatten()
        x[::5], x[1::7], x[2::9], x[3::4] = float("nan"), float("inf"), float("-inf"), -0.0
        return x.view(shape)
    if kind == "float64":
        return torch.randint(-3, 4, shape, generator=g).double() / 3
    return torch.randn(shape, generator=g)  # "normal": no ties


SHAPES = [(7, 13), (1, 40), (40, 1), (100,), (3, 4, 5), (1,), ()]
KINDS = ["few_values", "zeros", "negative", "special", "float64", "normal"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_exact_mask_is_the_stable_sorts_first_k(kind, shape):
    scores = scores_of(kind, shape, seed=len(shape) + len(kind))
    for percent in PERCENTS:
        mask = top_k_mask_exact(scores, percent)
        assert mask.dtype == torch.bool and mask.shape == scores.shape
        assert torch.equal(mask, brute_force(scores, percent)), percent


def test_exact_mask_of_an_empty_tensor_is_empty():
    assert top_k_mask_exact(torch.zeros(0, 8), 50.0).shape == (0, 8)


@pytest.mark.parametrize("shape", [(8, 64), (576, 8), (7, 13), (100,)])
def test_exact_mask_picks_what_torch_topk_picks_without_ties(shape):
    for seed, percent in enumerate(PERCENTS):
        scores = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        assert scores.flatten().unique().numel() == scores.numel()
        k = round(scores.numel() * percent / 100)
        by_topk = torch.zeros(scores.numel(), dtype=torch.bool)
        by_topk[scores.flatten().topk(k).indices] = True
        assert torch.equal(top_k_mask_exact(scores, percent), by_topk.view(shape))


def test_keys_order_and_tie_as_the_floats_do():
    values = [float("-inf"), -3e38, -1.0, -1e-45, -0.0, 0.0, 1e-45, 1.0, 3e38, float("inf")]
    for dtype, wide in ((torch.float32, False), (torch.float64, True), (torch.bfloat16, False)):
        x = torch.tensor(values, dtype=dtype)
        keys = _keys(x, wide)
        assert bool((keys[1:] >= keys[:-1]).all())
        assert torch.equal(keys[1:] == keys[:-1], x[1:] == x[:-1])  # equal keys: equal floats (-0.0 == 0.0)
    assert _keys(torch.tensor([float("nan")]), False) == _keys(torch.tensor([float("-inf")]), False)


def test_radix_select_agrees_with_the_exact_mask_in_one_process():
    # The selection the processes run, with its collectives as no-ops: many random tensors, many ties.
    g = torch.Generator().manual_seed(0)
    for trial in range(200):
        n = int(torch.randint(2, 300, (1,), generator=g))
        scores = scores_of(KINDS[trial % len(KINDS)], (n,), seed=trial)
        percent = float(torch.rand(1, generator=g)) * 100
        k = top_k_count(n, percent)
        if not 0 < k < n:
            continue
        for wide in (False, True):  # float32 keys, and the same scores as float64 keys (up to 8 rounds)
            keys = _keys(scores, wide)
            (threshold,), (needed,) = _radix_select([keys], [k], None)
            assert threshold == int(keys.kthvalue(n - k + 1).values), trial  # the k-th largest
            assert needed == k - int((keys > threshold).sum()), trial  # the rest of k: equal to it


def test_one_process_without_a_group_takes_whole_tensors():
    scores = scores_of("few_values", (6, 5), seed=0)
    assert torch.equal(sharded_top_k_mask(scores, 30.0, scores.numel(), 0), top_k_mask_exact(scores, 30.0))
    with pytest.raises(ValueError, match="not a whole tensor"):
        sharded_top_k_mask(scores[:3], 30.0, scores.numel(), 0)


def test_row_shards_split_like_torch_chunk():
    tensor = torch.arange(5 * 3).view(5, 3)
    for world in (1, 2, 3, 4, 6):
        shards = [row_shard(tensor, r, world) for r in range(world)]
        assert [s.shape[0] for s, _ in shards] == [c.shape[0] for c in tensor.chunk(world)] + \
            [0] * (world - len(tensor.chunk(world)))
        assert torch.equal(torch.cat([s for s, _ in shards]), tensor)
        assert all(offset == int(s.flatten()[0]) for s, offset in shards if s.numel())


# Multi-process: every rank builds the same whole tensors, keeps its rows, and checks its masks against its slice of
# the single-process mask. 7 rows over 4 ranks: 2+2+2+1; 3 rows: 1+1+1+0; 1 row: 1+0+0+0.
MULTI = {"ties": ("few_values", (7, 5)), "few_rows": ("few_values", (3, 6)), "one_row": ("special", (1, 40)),
         "vector": ("few_values", (10,)), "zeros": ("zeros", (5, 4)), "lora_b": ("normal", (64, 8)),
         "lora_a": ("special", (8, 64)), "negative": ("negative", (9, 3)), "scalar": ("normal", ())}


def _worker(rank: int, world: int, rendezvous: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        whole = {name: scores_of(kind, shape, seed=i) for i, (name, (kind, shape)) in enumerate(MULTI.items())}
        shards = {name: row_shard(t, rank, world) for name, t in whole.items()}
        local = {name: s for name, (s, _) in shards.items()}
        offsets = {name: o for name, (_, o) in shards.items()}
        totals = {name: t.numel() for name, t in whole.items()}
        for percent in PERCENTS:
            masks = sharded_top_k_masks(local, percent, totals, offsets)
            for name, tensor in whole.items():
                expected, _ = row_shard(top_k_mask_exact(tensor, percent), rank, world)
                assert masks[name].shape == local[name].shape, (name, percent)
                assert torch.equal(masks[name], expected), (rank, name, percent)
        # One tensor at a time, and float64 beside float32 (every tensor then compared in float64).
        wide = scores_of("float64", (11, 3), seed=99)
        part, offset = row_shard(wide, rank, world)
        assert torch.equal(sharded_top_k_mask(part, 40.0, wide.numel(), offset),
                           row_shard(top_k_mask_exact(wide, 40.0), rank, world)[0])
        mixed = sharded_top_k_masks({"wide": part, "ties": local["ties"]}, 20.0,
                                    {"wide": wide.numel(), "ties": totals["ties"]},
                                    {"wide": offset, "ties": offsets["ties"]})
        assert torch.equal(mixed["ties"], row_shard(top_k_mask_exact(whole["ties"], 20.0), rank, world)[0])
        if world == 4:  # a process group of two of the four (ranks 1 and 3), sharded between just those
            pair = dist.new_group([1, 3])
            if rank in (1, 3):
                part, offset = row_shard(whole["ties"], rank // 2, 2)
                assert torch.equal(sharded_top_k_mask(part, 30.0, totals["ties"], offset, group=pair),
                                   row_shard(top_k_mask_exact(whole["ties"], 30.0), rank // 2, 2)[0])
        # Shards that do not tile the tensor: every rank refuses (none waits forever for the others).
        with pytest.raises(ValueError, match="do not tile"):
            sharded_top_k_mask(local["ties"], 20.0, totals["ties"], offsets["ties"] + (rank == world - 1))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 4])
def test_shards_on_several_processes_give_the_single_process_mask(world, tmp_path, monkeypatch):
    # Forked, not spawned, where the system can: a spawned process imports torch afresh (seconds each, on a busy
    # machine); a forked one has it. The workers run one thread each, as under torchrun.
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    mp.start_processes(_worker, args=(world, str(tmp_path / "rendezvous")), nprocs=world, start_method=method)
