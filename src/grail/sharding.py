"""Stages 1-3 with the model sharded by PyTorch's FSDP2 (``torch.distributed.fsdp.fully_shard``): each process
holds a row shard of every parameter (a DTensor, ``Shard(0)``: ``torch.chunk`` over dim 0), of its gradient and of
its optimizer state, so a model whose weights, gradients and Adam moments do not fit one device fits several.
Stage 1 keeps each process's rows of the importance (``local_rows``), stage 2 finds its rows of the masks across
the shards (``shard_layout``, ``grail.stages.sharded_topk``) and gathers them whole for the file (``gather_rows``);
what follows is stage 3.

- ``shard_model``: the usual recipe, ``fully_shard`` on each decoder layer and then on the root. Frozen weights
  (LoRA's base model, or the embeddings and norms of ``adapter: full``) are sharded too; only what requires grad
  gets a gradient.
- Gradients: after each backward FSDP2 reduce-scatters every gradient, by default *averaged* over the processes
  (``ReduceOp.AVG``). The stages weight each process's loss by its share of the batch so that the shares'
  gradients *sum* to the whole batch's (``distributed.share_of_mean``, then ``distributed.sum_gradients`` under
  DDP). ``shard_model`` therefore makes FSDP2 sum (divide factor 1, plain ``SUM``): the same weighting gives the
  whole batch's gradient, and ``masked_update`` must not sum again.
- Every process must run every forward and every backward, since each gathers the shards of all and scatters the
  gradients to all: a process with no share of a batch runs a stand-in example weighted 0
  (``distributed.share_of_mean``'s ``stand_in``).
- Masks: stage 2's masks are whole tensors; ``shard_like`` cuts one to its parameter's local shard, and stage 3's
  masked operations act on the local shards (``local``), elementwise, so frozen entries stay bit-identical on every
  shard. Clipping takes the global norm: ``torch.nn.utils.clip_grad_norm_`` on DTensor gradients reduces the norm
  over the shards.
- Checkpoints: each process writes its shards of the trainable weights and of Adam's moments
  (``torch.distributed.checkpoint``; ``save_state``, ``load_state``), so no process ever holds the whole state;
  a sharded run resumes with as many processes as it was saved by.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

from grail import distributed


def is_sharded(params: Iterable[torch.Tensor]) -> bool:
    """Whether the parameters are FSDP2's shards (DTensors)."""
    return any(isinstance(param, DTensor) for param in params)


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This process's shard of a DTensor (a view: in-place changes reach the DTensor); a plain tensor itself."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The model's repeated blocks, by the classes transformers keeps whole when it splits a model across devices
    (``_no_split_modules``: ``LlamaDecoderLayer`` and the like); through a peft wrapper too."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(inner, "_no_split_modules", None) or [])
    layers = [module for module in model.modules() if type(module).__name__ in names]
    if not layers:
        raise ValueError(f"{type(inner).__name__}: no decoder layers to shard (no module of the classes "
                         f"{sorted(names)} of its _no_split_modules)")
    return layers


def shard_model(model: nn.Module) -> nn.Module:
    """Shard ``model`` in place over all processes (FSDP2: each decoder layer, then the root), with gradients summed
    over the processes; returns it. The process group must be up (``distributed.init_from_env``). What the model
    keeps of its base weights beside its parameters (``adapter: full``: ``models.base_weights``) is sharded alike."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard

    if not distributed.active():
        raise RuntimeError("shard_model needs a process group (torchrun, then distributed.init_from_env)")
    mesh = init_device_mesh("cuda" if torch.cuda.is_available() else "cpu", (distributed.world_size(),))
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    for module in model.modules():
        if isinstance(module, FSDPModule):  # sum, as distributed.sum_gradients does (the default averages)
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)  # a plain SUM: no pre-multiplied sum (gloo has none)
    _shard_kept_weights(model)
    return model


def _shard_kept_weights(model: nn.Module) -> None:
    """The copies ``models.make_trainable`` (full: the base linear weights) and a brought vanilla model (the base
    values of the frozen weights it changed) keep beside the parameters, cut like their parameters, so that
    ``models.base_weights`` can copy them in."""
    from grail.models import trainable_parameters

    for attribute, params in (("_grail_base_weights", trainable_parameters(model)),
                              ("_grail_base_frozen", dict(model.named_parameters()))):
        kept = getattr(model, attribute, None)
        if kept:
            setattr(model, attribute, {name: _like(value, params[name]) if isinstance(params[name], DTensor)
                                        else value for name, value in kept.items()})


def _like(tensor: torch.Tensor, param: DTensor) -> DTensor:
    """``tensor`` (a whole tensor, the same on every process) as a DTensor placed as ``param``, holding a copy of
    this process's part only (not a view that keeps the whole alive); no message is sent."""
    whole = distribute_tensor(tensor.to(param.device), param.device_mesh, param.placements, src_data_rank=None)
    return DTensor.from_local(whole.to_local().clone(), param.device_mesh, param.placements, run_check=False,
                              shape=whole.shape, stride=whole.stride())


def row_range(rows: int, rank: int, world_size: int) -> slice:
    """This rank's rows of a tensor of ``rows`` rows as DTensor ``Shard(0)`` and FSDP2 split it (``torch.chunk``
    over dim 0: every rank ceil(rows / world_size) rows, the last ones fewer or none)."""
    per_rank = -(-rows // world_size)
    start = min(rank * per_rank, rows)
    return slice(start, min(start + per_rank, rows))


def local_rows(param: torch.Tensor) -> slice:
    """The rows (dim 0) of ``param`` this process holds: all of a plain tensor; of a DTensor sharded ``Shard(0)``,
    FSDP2's split (``row_range``)."""
    if not isinstance(param, DTensor):
        return slice(None)
    return row_range(param.shape[0], param.device_mesh.get_local_rank(), param.device_mesh.size())


def shard_layout(params: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, int]]:
    """Per parameter: its whole numel and the flat offset of this process's rows in it (``Localizer``'s ``shards``)."""
    layout = {}
    for name, param in params.items():
        start = local_rows(param).start or 0
        layout[name] = (param.numel(), start * math.prod(param.shape[1:]))
    return layout


def shard_like(mask: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """A whole-tensor mask cut to ``param``'s local shard (its ``to_local()`` shape, on its device); for a plain
    parameter, the mask on its device."""
    return _like(mask, param).to_local() if isinstance(param, DTensor) else mask.to(param.device)


def shard_masks(masks: Mapping[str, torch.Tensor], params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``shard_like`` for each mask of a {parameter name: mask} mapping."""
    return {name: shard_like(mask, params[name]) for name, mask in masks.items()}


def gather_rows(shard: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """A tensor laid out as ``param``'s local shard (a mask or scores of it), whole, on every process (an all-gather:
    every process must call it); for a plain parameter, ``shard`` itself."""
    if not isinstance(param, DTensor):
        return shard
    carried = shard.to(torch.uint8) if shard.dtype == torch.bool else shard  # gloo gathers no bool
    whole = DTensor.from_local(carried.to(param.device), param.device_mesh, param.placements, run_check=False,
                               shape=param.shape, stride=param.stride()).full_tensor()
    return whole.to(shard.dtype).to(shard.device)


def full_weights(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each parameter whole, on every process (an all-gather per sharded one: every process must call it)."""
    return {name: (p.full_tensor() if isinstance(p, DTensor) else p).detach().clone() for name, p in params.items()}


def _state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The trainable weights' and the optimizer's state dicts as this process's shards (frozen weights left out:
    they are the model's own and never change)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    weights, optimizer_state = get_state_dict(model, optimizer, options=StateDictOptions(ignore_frozen_params=True))
    return {"model": weights, "optimizer": optimizer_state}


def save_state(model: nn.Module, optimizer: torch.optim.Optimizer, folder: Path) -> None:
    """Every process writes its shards of the trainable weights and of the optimizer state to ``folder``
    (``torch.distributed.checkpoint``: one file a process and the metadata); every process must call it."""
    import torch.distributed.checkpoint as dcp

    dcp.save(_state_dicts(model, optimizer), checkpoint_id=folder)


def load_state(model: nn.Module, optimizer: torch.optim.Optimizer, folder: Path) -> None:
    """What ``save_state`` wrote, read into this process's shards (the same number of processes)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    state = _state_dicts(model, optimizer)
    dcp.load(state, checkpoint_id=folder)
    # not strict: the frozen weights, left out of the state, stay as they are (every trainable one is in it: dcp.load
    # fills exactly the keys get_state_dict gave, or fails naming the one missing from the folder)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"],
                   options=StateDictOptions(ignore_frozen_params=True, strict=False))
