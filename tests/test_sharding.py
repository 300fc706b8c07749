"""Stage 3 on a model sharded by FSDP2 (``grail.sharding``, gloo on CPU): 2 and 4 processes, forked from the test,
against one process with the whole model. Frozen entries stay bit-identical on every shard; the unlearned weights
are one process's, up to float summation order."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import os
from unittest import mock

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tiny_configs import lora_on
from torch.optim.optimizer import register_optimizer_step_pre_hook

from grail import sharding
from grail.batching import encode_all
from grail.config import ModelConfig, UnlearnConfig
from grail.models import make_trainable, trainable_parameters
from grail.stages import unlearn as stage3
from grail.stages.sharded_topk import row_shard
from grail.stages.unlearn import UpdateMasks, unlearn

CONFIG = UnlearnConfig(epochs=1, lr=1e-2, weight_decay=0.1, batch_size=4, target="none", utility_budget=None,
                       general_weight=0.0, anchor_weight=0.0, max_grad_norm=0.05)
"""The default objective (``to_base``: the base model's reference, through ``models.base_weights``) on a small
batch: with 4 processes and 2 forget examples a step, two processes have no share and run stand-ins; the small
``max_grad_norm`` makes every step clip, so a norm of one shard instead of the whole would show."""


def _full_model(base):
    torch.manual_seed(0)
    return make_trainable(copy.deepcopy(base), ModelConfig(name="tiny", adapter="full"))


MODELS = {"lora": lora_on, "full": _full_model}


def _frozen(params: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: torch.rand(p.shape, generator=g) < 0.3 for name, p in params.items()}


def _data(sets):
    """Four forget and four retain examples of each domain: 8 forget examples, 4 steps of 2."""
    forget, retain = sets
    return {d: xs[:4] for d, xs in forget.items()}, {d: xs[:4] for d, xs in retain.items()}


def _whole(grads) -> list[torch.Tensor | None]:
    return [None if g is None else g.full_tensor() if sharding.is_sharded([g]) else g.clone() for g in grads]


@contextlib.contextmanager
def _recording():
    """Each step's gradients, whole: as ``masked_update`` takes them (masked, summed over processes: ``summed``)
    and as the optimizer takes them (clipped too: ``clipped``). Adam hides a gradient's scale and clipping a norm's,
    so the weights alone would not show a mean taken for a sum or one shard's norm for the whole's."""
    seen = {"summed": [], "clipped": []}
    update = stage3.masked_update

    def recorded(params, optimizer, masks, config):
        seen["summed"].append(_whole(p.grad for p in params.values()))
        update(params, optimizer, masks, config)

    def before_step(optimizer, args, kwargs):
        seen["clipped"].append(_whole(p.grad for group in optimizer.param_groups for p in group["params"]))

    hook = register_optimizer_step_pre_hook(before_step)
    try:
        with mock.patch.object(stage3, "masked_update", recorded):
            yield seen
    finally:
        hook.remove()


def _unlearn(model, sets, pad_id, frozen, policy):
    """Stage 3 on ``model`` in place; returns each step's gradients (``_recording``)."""
    masks = UpdateMasks.for_policy({"frozen": frozen, "op_ur": frozen, "op_rr": frozen}, policy)
    config = dataclasses.replace(CONFIG, policy=policy)
    forget, retain = _data(sets)
    with _recording() as seen:
        unlearn(model, forget, retain, config, pad_id=pad_id, seed=0, masks=masks)
    return seen


def _worker(rank, world_size, store, model, sets, pad_id, frozen, policy, out):
    """One of ``world_size`` forked processes: the test's vanilla ``model`` (its copy of it) sharded, unlearned;
    its shards, the whole weights and the recorded gradients saved to ``out``."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=60))  # a collective one process misses fails
    try:
        sharding.shard_model(model)
        params = trainable_parameters(model)
        assert sharding.is_sharded(params.values())
        grads = _unlearn(model, sets, pad_id, frozen, policy)
        local = {name: sharding.local(p).detach().clone() for name, p in params.items()}
        whole = sharding.full_weights(params)
        torch.save({"local": local, "whole": whole, "grads": grads}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def vanilla(tiny_base):
    """Per adapter: the vanilla model, its trainable weights and a random frozen mask."""
    base, _ = tiny_base
    out = {}
    for adapter, build in MODELS.items():
        model = build(base)
        params = trainable_parameters(model)
        out[adapter] = model, {n: p.detach().clone() for n, p in params.items()}, _frozen(params)
    return out


@pytest.fixture(scope="module")
def one_process(vanilla, tiny_base, tiny_sets_module):
    """Per (adapter, policy): the weights one process with the whole model unlearns to, and its gradients."""
    _, tokenizer = tiny_base
    cache = {}

    def get(adapter, policy):
        if (adapter, policy) not in cache:
            model, _, frozen = vanilla[adapter]
            model = copy.deepcopy(model)
            grads = _unlearn(model, tiny_sets_module, tokenizer.pad_token_id, frozen, policy)
            cache[adapter, policy] = {n: p.detach().clone() for n, p in trainable_parameters(model).items()}, grads
        return cache[adapter, policy]

    return get


@pytest.fixture(scope="module")
def tiny_sets_module(tiny_base, tiny_bench):
    """conftest's ``tiny_sets``, once for the module."""
    _, tokenizer = tiny_base
    encoded = {f"{d}/{s}": encode_all(tokenizer, ex) for d, s, ex in tiny_bench.datasets()}
    return tuple({k.split("/")[0]: v for k, v in encoded.items() if k.endswith(f"/{scope}")}
                 for scope in ("forget", "retain"))


def _sharded(world_size, tmp_path, vanilla, adapter, sets, pad_id, policy):
    model, _, frozen = vanilla[adapter]
    mp.start_processes(_worker, args=(world_size, str(tmp_path / "store"), model, sets, pad_id, frozen, policy,
                                      str(tmp_path)), nprocs=world_size, start_method="fork")
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(world_size)]


@pytest.mark.parametrize("adapter,world_size,policy", [("lora", 2, "paper"), ("lora", 4, "paper"),
                                                        ("full", 2, "paper"), ("full", 4, "paper"),
                                                        ("lora", 2, "per-objective")])
def test_sharded_stage_3_freezes_exactly_and_unlearns_like_one_process(tmp_path, vanilla, one_process, tiny_base,
                                                                       tiny_sets_module, adapter, world_size,
                                                                       policy):
    _, before, frozen = vanilla[adapter]
    expected, expected_grads = one_process(adapter, policy)
    results = _sharded(world_size, tmp_path, vanilla, adapter, tiny_sets_module, tiny_base[1].pad_token_id, policy)
    for rank, result in enumerate(results):
        for kind, steps in expected_grads.items():  # every step: the same gradients, whole, on every process
            assert len(result["grads"][kind]) == len(steps) == 4
            for got, want in zip(result["grads"][kind], steps):
                for g, w in zip(got, want, strict=True):
                    torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-7)
        for name, whole in result["whole"].items():
            assert torch.equal(whole[frozen[name]], before[name][frozen[name]]), f"{name}: frozen entries moved"
            torch.testing.assert_close(whole, expected[name], rtol=1e-4, atol=1e-5)
            own, _ = row_shard(before[name], rank, world_size)
            own_frozen, _ = row_shard(frozen[name], rank, world_size)
            assert torch.equal(result["local"][name][own_frozen], own[own_frozen]), f"{name}: shard {rank} moved"
    moved = sum(int((expected[n] != before[n]).sum()) for n in before)
    assert moved > 0.5 * sum(int((~m).sum()) for m in frozen.values())  # the update did move what may move


def _mask_shapes(rank, world_size, store, model, frozen, out):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=60))
    try:
        sharding.shard_model(model)
        params = trainable_parameters(model)
        masks = sharding.shard_masks(frozen, params)
        torch.save({name: (tuple(sharding.local(p).shape), tuple(masks[name].shape),
                           torch.equal(masks[name], row_shard(frozen[name], rank, world_size)[0]))
                    for name, p in params.items()}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_a_mask_shard_has_its_parameters_local_shape(tmp_path, vanilla):
    """3 processes over LoRA tensors of 4, 32, 64 and 128 rows: uneven shards as ``torch.chunk`` cuts them (4 rows:
    2, 2 and none)."""
    model, _, frozen = vanilla["lora"]
    mp.start_processes(_mask_shapes, args=(3, str(tmp_path / "store"), model, frozen, str(tmp_path)), nprocs=3,
                       start_method="fork")
    for rank in range(3):
        shapes = torch.load(tmp_path / f"rank{rank}.pt")
        assert shapes and all(local == mask and same for local, mask, same in shapes.values())
        if rank == 0:  # torch.chunk: ceil(rows / 3) rows on the first process
            assert all(mask[0] == -(-frozen[n].shape[0] // 3) for n, (_, mask, _) in shapes.items())
        if rank == 2:  # LoRA A's 4 rows: none left for the last process
            assert all(mask[0] == 0 for n, (_, mask, _) in shapes.items() if "lora_A" in n)


def test_whole_parameters_keep_their_masks_on_their_device(vanilla):
    model, _, frozen = vanilla["lora"]
    params = trainable_parameters(model)
    assert not sharding.is_sharded(params.values())
    masks = sharding.shard_masks(frozen, params)
    assert all(masks[n] is frozen[n] for n in frozen)  # unsharded: nothing cut, nothing copied


class _Interrupted(Exception):
    pass


def _interrupt(epoch: int) -> None:
    raise _Interrupted


def _resume_worker(rank, world_size, store, model, sets, pad_id, frozen, out):
    """Sharded stage 3 of two epochs three times: uninterrupted; interrupted after its first epoch (checkpoint
    written through torch.distributed.checkpoint); resumed from that checkpoint on a fresh copy of the model."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=60))
    try:
        config = dataclasses.replace(CONFIG, epochs=2)
        forget, retain = _data(sets)
        checkpoints = os.path.join(out, "checkpoints")
        finished = {}
        for run in ("whole", "interrupted", "resumed"):
            sharded = sharding.shard_model(copy.deepcopy(model))
            masks = UpdateMasks.for_policy({"frozen": frozen}, "paper")
            with contextlib.suppress(_Interrupted):
                log = unlearn(sharded, forget, retain, config, pad_id=pad_id, seed=0, masks=masks,
                              checkpoint_dir=None if run == "whole" else checkpoints, fingerprint="f",
                              on_epoch_end=_interrupt if run == "interrupted" else None)
                finished[run] = (sharding.full_weights(trainable_parameters(sharded)), [e["epoch"] for e in log])
            dist.barrier()
            if run == "interrupted":
                finished["saved"] = sorted(os.listdir(checkpoints))
        torch.save(finished, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("adapter", ["lora", "full"])
def test_a_sharded_stage_3_resumes_from_its_sharded_checkpoint_as_if_never_interrupted(tmp_path, vanilla, tiny_base,
                                                                                      tiny_sets_module, adapter):
    model, before, frozen = vanilla[adapter]
    mp.start_processes(_resume_worker, args=(2, str(tmp_path / "store"), model, tiny_sets_module,
                                             tiny_base[1].pad_token_id, frozen, str(tmp_path)),
                       nprocs=2, start_method="fork")
    for rank in range(2):
        finished = torch.load(tmp_path / f"rank{rank}.pt")
        assert "interrupted" not in finished and finished["saved"] == ["shards-0", "state.pt"]
        whole, epochs = finished["whole"]
        resumed, resumed_epochs = finished["resumed"]
        assert epochs == resumed_epochs == [0, 1]  # the resumed run logs the saved epoch and runs the second
        for name, weights in whole.items():
            assert torch.equal(resumed[name], weights), f"{name}: the resumed run differs"
            assert torch.equal(weights[frozen[name]], before[name][frozen[name]])
        assert any(not torch.equal(whole[n], before[n]) for n in before)


def _embedded_worker(rank, world_size, store, model, sets, pad_id, frozen, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=600))
    try:
        sharding.shard_model(model)
        grads = _unlearn_one_step(model, sets, pad_id, frozen)
        whole = sharding.full_weights(trainable_parameters(model))
        if rank == 0:
            torch.save({"whole": whole, "grads": grads}, os.path.join(out, "sharded.pt"))
    finally:
        dist.destroy_process_group()


def _unlearn_one_step(model, sets, pad_id, frozen):
    """One stage-3 step (one forget and one retain example of each domain); the step's gradients, whole."""
    forget, retain = ({d: xs[:1] for d, xs in part.items()} for part in sets)
    with _recording() as seen:
        unlearn(model, forget, retain, CONFIG, pad_id=pad_id, seed=0,
                masks=UpdateMasks.for_policy({"frozen": frozen}, "paper"))
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["lora", "full"])
def test_sharded_stage_3_on_the_embedded_model_steps_like_one_process(tmp_path, adapter):
    """SmolLM2-135M-Instruct, 2 processes against 1, one step: the same summed and clipped gradients, and every
    frozen entry bit-identical. (One step: Adam's update is about lr * sign(g), so over several steps a gradient
    entry near zero turns float summation order into whole steps of difference.)"""
    from grail.data.builtin import builtin_benchmark
    from grail.models import load_base

    base, tokenizer = load_base(ModelConfig())
    torch.manual_seed(0)
    model = make_trainable(base, ModelConfig(adapter=adapter, lora_dropout=0.0))
    params = trainable_parameters(model)
    before, frozen = {n: p.detach().clone() for n, p in params.items()}, _frozen(params)
    encoded = {f"{d}/{s}": encode_all(tokenizer, ex) for d, s, ex in builtin_benchmark(seed=0, people=2,
                                                                                       books=2).datasets()}
    sets = tuple({k.split("/")[0]: v for k, v in encoded.items() if k.endswith(f"/{scope}")}
                 for scope in ("forget", "retain"))
    mp.start_processes(_embedded_worker, args=(2, str(tmp_path / "store"), copy.deepcopy(model), sets,
                                               tokenizer.pad_token_id, frozen, str(tmp_path)),
                       nprocs=2, start_method="fork")
    expected = _unlearn_one_step(model, sets, tokenizer.pad_token_id, frozen)
    sharded = torch.load(tmp_path / "sharded.pt")
    for kind, steps in expected.items():
        assert len(sharded["grads"][kind]) == len(steps) == 1
        for got, want in zip(sharded["grads"][kind][0], steps[0], strict=True):
            # two shares of a batch summed against the whole: on 135M parameters and real sequence lengths float32
            # summation order moves an entry by up to ~3e-6, a few 1e-4 of the tensor's largest
            scale = want.abs().max().item() if want is not None else 0.0
            torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3 * scale + 1e-7)
    for name in params:
        assert torch.equal(sharded["whole"][name][frozen[name]], before[name][frozen[name]]), f"{name}: moved"
    assert any(not torch.equal(sharded["whole"][n], before[n]) for n in before)
