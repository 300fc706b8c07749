"""``grail audit RUN``: from the run's files alone, check that every frozen entry is bit-identical between the
vanilla and the unlearned weights, and count what changed."""

from __future__ import annotations

from pathlib import Path

import torch

from grail.config import read_yaml_mapping
from grail.models import read_trainable_file
from grail.run_folder import RunFolderError
from grail.stages.localize import load_masks
from grail.stages.unlearn import UpdateMasks

_SAME_SIZE_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
NO_UNLEARNED_MODEL = "no unlearned model: run stage 3 first (grail run / grail unlearn)"


def _is_there(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name the system refuses (too long) names nothing
        return False


def require_unlearned_model(run_folder: str | Path) -> None:
    """Refuse, naming the first missing file, a folder that holds no run or no unlearned model of GRAIL yet (a run
    of stage 0 only): what ``grail audit`` checks, and what ``grail audit --evidence`` and ``grail attack`` report on,
    is not there."""
    folder = Path(run_folder)
    if not _is_there(folder / "config.yaml"):
        raise RunFolderError(f"{folder / 'config.yaml'}: missing: not a run folder; make one with grail run")
    for needed in ("masks.safetensors", "adapter_vanilla", "adapter_unlearned"):
        if not _is_there(folder / needed):
            raise RunFolderError(f"{folder / needed}: missing: {NO_UNLEARNED_MODEL}")


def bits_changed(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Entry-wise "the bits differ" (so -0.0 vs 0.0 and NaN payloads count as changes, NaN == NaN does not)."""
    if before.shape != after.shape or before.dtype != after.dtype:
        raise ValueError(f"shape or dtype differ: {tuple(before.shape)} {before.dtype} "
                         f"vs {tuple(after.shape)} {after.dtype}")
    as_int = _SAME_SIZE_INT[before.element_size()]
    return before.contiguous().view(as_int) != after.contiguous().view(as_int)


def audit(run_folder: str | Path) -> dict:
    """Counts of frozen / free entries and how many of each changed; ``ok`` iff no frozen entry changed."""
    folder = Path(run_folder)
    require_unlearned_model(folder)
    config = read_yaml_mapping(folder / "config.yaml")
    policy = config.get("unlearn", {}).get("policy", "paper")
    localize_cfg = config.get("localize", {})
    masks = load_masks(folder / "masks.safetensors")
    frozen = UpdateMasks.for_policy(masks, policy, localize_cfg.get("use_op_ur", True),
                                    localize_cfg.get("use_op_rr", True)).never_moving()
    before = read_trainable_file(folder / "adapter_vanilla")
    after = read_trainable_file(folder / "adapter_unlearned")
    totals = {"frozen_entries": 0, "frozen_changed": 0, "free_entries": 0, "free_changed": 0}
    offenders = []
    for name, mask in frozen.items():
        if name not in before or name not in after:
            raise KeyError(f"{folder}: parameter {name} is in masks.safetensors but not in both adapters")
        changed = bits_changed(before[name], after[name])
        n_frozen_changed = int((changed & mask).sum())
        totals["frozen_entries"] += int(mask.sum())
        totals["frozen_changed"] += n_frozen_changed
        totals["free_entries"] += int((~mask).sum())
        totals["free_changed"] += int((changed & ~mask).sum())
        if n_frozen_changed:
            offenders.append(name)
    return {"policy": policy, "ok": totals["frozen_changed"] == 0, **totals, "tensors_with_changed_frozen": offenders}
