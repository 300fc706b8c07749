"""GPU check: the smoke preset end to end on CUDA, then stage 3 resumed from a checkpoint on CUDA with masks loaded
from the run folder (on the CPU). Run it wherever a GPU is available:

    .venv/bin/python benchmarks/gpu_check.py            # exit 0: every check passed

What it guards: masks loaded from masks.safetensors live on the CPU and must move to each parameter's device
before stage 3 combines them with CUDA parameters; checkpoints must load onto the CPU first (map_location), or
every process's copy lands on GPU 0.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import torch


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing to check", file=sys.stderr)
        return 0
    from grail.audit import audit
    from grail.config import build_config
    from grail.models import read_trainable_file
    from grail.pipeline import Pipeline

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "smoke"
        config = build_config(preset="smoke")
        result = Pipeline(folder, config, device="cuda").run()
        assert result["audit"]["ok"], result["audit"]
        print("smoke preset on CUDA: done, audit PASS", file=sys.stderr)

        # stage 3 again from its checkpoint after the first epoch: the checkpoint is read on the CPU, the masks
        # from the folder, and the finished adapter must equal the uninterrupted one
        first = read_trainable_file(folder / "adapter_unlearned")
        shutil.rmtree(folder / "adapter_unlearned")
        resumed = Pipeline(folder, device="cuda")
        resumed.stage3_unlearn()
        second = read_trainable_file(folder / "adapter_unlearned")
        assert all(torch.equal(first[k], second[k]) for k in first), "resumed stage 3 differs on CUDA"
        assert audit(folder)["ok"]
        print(f"stage 3 resumed on CUDA from the checkpoint: same adapter; GPU memory peak "
              f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
