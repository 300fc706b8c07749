"""Several processes, one run: what the stages need from ``torch.distributed``, and nothing when it is not in use.

``torchrun --nproc_per_node N grail ...`` and ``accelerate launch --num_processes N -m grail.cli ...`` start N
copies of the command with RANK, WORLD_SIZE and LOCAL_RANK set; ``init_from_env`` joins them into one process
group (NCCL on GPUs, gloo on CPUs). From then on:

- stage 1: each process takes every N-th batch of per-example gradients; the per-dataset sums are all-reduced;
- stages 0 and 3: each process takes its share of every batch; the gradients are all-reduced (summed, each
  process's loss weighted by its share of the batch), so every process makes the same update, as under DDP;
- with ``distributed: fsdp`` (``fsdp_requested``) stages 1-3 run on a model sharded by FSDP2 instead
  (``grail.sharding``): stage 1 keeps each process's rows of the scores, stage 2 finds its rows of the masks, stage
  3's gradients FSDP2 sums into each process's shard, and every process gathers the masks and the unlearned weights;
- everything else (stage 2, evaluation) runs on every process, on identical weights, so every process takes
  the same decisions (early stopping, reverting) without further messages;
- only process 0 writes files (``grail.io`` checks), and every write ends with a barrier, so what one process
  wrote is there for all when they read it; whether an output exists is what process 0 sees (``io.exists``),
  so no process skips a step that another one is about to write.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def init_from_env() -> None:
    """Join the process group a launcher described in the environment (no-op for a single process)."""
    if active() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")


def close() -> None:
    if active():
        dist.destroy_process_group()


def default_device() -> str:
    if torch.cuda.is_available():
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if active() else "cuda"
    return "cpu"


def shard(items: Sequence[T]) -> list[T]:
    """This process's share: every world_size-th item, starting at its rank."""
    return list(items[rank()::world_size()])


def share_of_mean(term: Callable[[list[T]], tuple[torch.Tensor, float]], mine: list[T],
                  batch_size: int, stand_in: list[T] | None = None) -> tuple[torch.Tensor, float]:
    """A loss's mean over this process's share ``mine`` of a batch of ``batch_size``, weighted by the share, so
    the shares' gradients sum to the whole batch's; (zero, nan) for an empty share. A sharded model (FSDP2,
    ``grail.sharding``) needs every process in every forward and backward: there an empty share runs ``term`` on
    ``stand_in`` (an example of the batch), weighted 0."""
    if not mine:
        if stand_in:
            return term(stand_in)[0] * 0.0, math.nan
        return torch.zeros(()), math.nan
    loss, logged = term(mine)
    return loss * (len(mine) / batch_size), logged


def sum_across(tensors: Iterable[torch.Tensor]) -> None:
    """All-reduce (sum) in place, on every process."""
    if active():
        for tensor in tensors:
            dist.all_reduce(tensor)


def sum_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Sum every parameter's gradient over the processes (a process with no examples contributes zeros), in one
    all-reduce of all gradients flattened together: one message a step, not one per tensor."""
    if not active():
        return
    params = list(params)
    for param in params:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
    flat = torch.cat([param.grad.reshape(-1) for param in params])
    dist.all_reduce(flat)
    for param, summed in zip(params, flat.split([param.numel() for param in params])):
        param.grad.copy_(summed.view_as(param.grad))


def main_value(obj: T) -> T:
    """Process 0's ``obj`` on every process (what it saw decides, e.g. whether an output exists yet)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: T) -> list[T]:
    """Every process's ``obj``, in rank order, on every process."""
    if not active():
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def fsdp_requested(choice: str) -> bool:
    """Whether stages 1-3 shard the model (FSDP2, ``grail.sharding``): several processes, and the config's
    ``distributed: fsdp`` or a launcher that asks for FSDP (``accelerate launch`` with an FSDP config sets
    ACCELERATE_USE_FSDP)."""
    asked = choice == "fsdp" or os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true")
    return asked and world_size() > 1
