"""What stage 0 (fine-tuning) and stage 3 (unlearning) share: the epoch loop with resumable checkpoints.

An epoch's data order depends only on (seed, epoch); torch's global RNG (LoRA dropout) is seeded when a stage
starts from its first epoch, so a stage's result does not depend on what ran before it in the process (stage 0
or not); a checkpoint holds the trainable weights, the optimizer state and the RNG state after each epoch, so a
run interrupted at any point and resumed gives the same weights as an uninterrupted one. A model sharded by FSDP2
(``grail.sharding``) keeps its weights and optimizer state as shards, each process writing its own through
``torch.distributed.checkpoint`` (``sharding.save_state``), beside the same small state file.
"""

from __future__ import annotations

import os
import random
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from grail import distributed, sharding
from grail.models import set_trainable, trainable_state

LOOP_VERSION = 2
"""Part of the key of cached models: raised when the same config trains other weights (2: torch seeded per stage)."""

EpochFn = Callable[[int, random.Random, list[dict[str, Any]]], dict[str, Any]]
"""Runs one epoch (given its index, its data-order RNG and the logs of the epochs before) and returns its log."""
StopFn = Callable[[int, dict[str, Any]], str | None]
"""Looks at an epoch's log and returns a reason to stop, or None to go on."""


def epoch_rng(seed: int, epoch: int) -> random.Random:
    return random.Random(seed * 1_000_003 + epoch)


class Checkpoint:
    """The state after the last finished epoch, in ``folder/state.pt``, tagged with the config fingerprint;
    ``extra``: what else the epochs keep between them (saved and restored with it, in place)."""

    def __init__(self, folder: Path | None, fingerprint: str) -> None:
        self.path = None if folder is None else Path(folder) / "state.pt"
        self.fingerprint = fingerprint
        self.extra: dict[str, Any] = {}

    def save(self, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, history: list[dict]) -> None:
        """Write the state after ``epoch`` (process 0; a sharded model: every process its shards, then process 0
        the state file naming them, so an interruption at any point leaves the previous epoch's state whole)."""
        if self.path is None:
            return
        state = {"fingerprint": self.fingerprint, "epoch": epoch, "history": history, "extra": self.extra}
        if sharding.is_sharded(model.parameters()):
            state["shards"] = f"shards-{epoch}"
            sharding.save_state(model, optimizer, self.path.parent / state["shards"])
            state["torch_rng"] = distributed.gather_objects(torch.get_rng_state())  # each process's dropout
        elif distributed.is_main():
            state |= {"trainable": trainable_state(model), "optimizer": optimizer.state_dict(),
                      "torch_rng": torch.get_rng_state()}
        if distributed.is_main():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            torch.save(state, tmp)
            os.replace(tmp, self.path)
            for old in self.path.parent.glob("shards-*"):  # the epochs before, and a sharded run's of another config
                if old.name != state.get("shards"):
                    shutil.rmtree(old, ignore_errors=True)
        distributed.barrier()

    def load(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, list[dict]]:
        """Restore the saved state; returns (next epoch, history). A checkpoint of another config is ignored.

        So is one that cannot be read (truncated by a full disk, damaged by a copy), with a warning naming it: the
        stage starts again from its first epoch. A checkpoint only saves progress, and a stage run from its start
        gives the same weights (its random state is seeded there), so losing one costs time, never correctness;
        an error instead would stop every resume until the user found and deleted the file. The next epoch's
        checkpoint replaces the damaged file."""
        if self.path is None or not self.path.is_file():
            return 0, []
        state = self._read()
        if state is None or state["fingerprint"] != self.fingerprint:
            return 0, []
        sharded = sharding.is_sharded(model.parameters())
        if sharded != ("shards" in state):  # the same config, another launch: start again rather than guess
            if distributed.is_main():
                warnings.warn(f"{self.path}: a checkpoint of a {'' if 'shards' in state else 'not '}sharded run; "
                              "this stage starts again from its first epoch", stacklevel=2)
            return 0, []
        if sharded:
            rng = state["torch_rng"]
            if len(rng) != distributed.world_size():
                raise RuntimeError(f"{self.path}: saved by {len(rng)} processes, resumed by "
                                   f"{distributed.world_size()}; resume with {len(rng)}")
            sharding.load_state(model, optimizer, self.path.parent / state["shards"])
            torch.set_rng_state(rng[distributed.rank()])
        else:
            set_trainable(model, state["trainable"], str(self.path))
            optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
        self.extra.clear()
        self.extra.update(state.get("extra", {}))
        return state["epoch"] + 1, state["history"]

    def _read(self) -> dict[str, Any] | None:
        """The saved state, or None (with a warning naming the file) when it cannot be read."""
        try:
            # On the CPU first: saved from a GPU, it would otherwise land on that GPU in every process.
            state = torch.load(self.path, weights_only=False, map_location="cpu")
        except Exception as err:  # RuntimeError, EOFError, UnpicklingError, ... whatever the damage
            reason = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:160]}"
        else:
            if isinstance(state, dict) and state.keys() >= _CHECKPOINT_FIELDS and (
                    "shards" in state or state.keys() >= {"trainable", "optimizer"}):
                return state
            reason = "not a grail checkpoint"
        if distributed.is_main():
            warnings.warn(f"{self.path}: unreadable checkpoint ({reason}); this stage starts again from its first "
                          "epoch", stacklevel=3)
        return None


_CHECKPOINT_FIELDS = {"fingerprint", "epoch", "history", "torch_rng"}
"""What ``Checkpoint.save`` writes and ``load`` needs, with the weights and optimizer state (``trainable`` and
``optimizer``, or a sharded model's ``shards`` folder); ``extra`` is optional: older checkpoints lack it."""


def run_epochs(model: nn.Module, optimizer: torch.optim.Optimizer, epochs: int, seed: int, run_epoch: EpochFn,
               should_stop: StopFn, checkpoint: Checkpoint,
               on_epoch_end: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Run (or resume) up to ``epochs`` epochs, stopping early when ``should_stop`` gives a reason."""
    start, history = checkpoint.load(model, optimizer)
    if start == 0:
        torch.manual_seed(seed)  # on resume, the checkpoint restored the RNG state instead
    if history and history[-1].get("stop"):
        return history
    for epoch in range(start, epochs):
        log = {"epoch": epoch, **run_epoch(epoch, epoch_rng(seed, epoch), history)}
        reason = should_stop(epoch, log)
        if reason:
            log["stop"] = reason
        history.append(log)
        checkpoint.save(model, optimizer, epoch, history)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
        if reason:
            break
    return history
