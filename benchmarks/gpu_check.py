"""GPU check: the smoke preset end to end on CUDA, then stage 3 resumed from a checkpoint on CUDA with masks loaded
from the run folder (on the CPU); with two GPUs or more, stages 1-3 again by two processes on the model sharded
(``distributed: fsdp``, bf16 where the GPU supports it), printing each stage's seconds and throughput.
Run it wherever a GPU is available:

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
        if torch.cuda.device_count() >= 2:
            two_gpus_sharded(folder, Path(tmp))
    return 0


def two_gpus_sharded(smoke: Path, tmp: Path) -> None:
    """Stages 1-3 and evaluation by two processes (NCCL) on FSDP2 shards, from the smoke run's vanilla model; the
    audit must pass; prints seconds and data rows a second per stage."""
    import os
    import subprocess

    import yaml

    from grail import io

    config = yaml.safe_load((smoke / "config.yaml").read_text())
    config["distributed"] = "fsdp"
    if torch.cuda.is_bf16_supported():
        config["model"]["dtype"] = "bfloat16"
    folder = tmp / "fsdp"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    for name in ("adapter_vanilla", "data.jsonl", "general_replay.jsonl"):  # stage 0 as the smoke run made it
        source = smoke / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, folder / name)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "grail.cli",
               "run", "--out", str(folder), "--quiet"]
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    results = io.read_json(folder / "results.json")
    assert results["audit"]["ok"], results["audit"]
    rows = sum(1 for _ in (folder / "data.jsonl").open())
    timings = results["timings_s"]
    print(f"two GPUs, stages 1-3 sharded (FSDP2), dtype {config['model']['dtype']}: audit PASS", file=sys.stderr)
    for stage, seconds in timings.items():  # sharded, stages 1 and 2 are one step (stages12_...)
        if stage.startswith(("stage1", "stages12", "stage2", "stage3")):
            rate = f"{rows / seconds:.1f} data rows a second" if seconds else "no time"
            print(f"  {stage}: {seconds:.1f} s ({rate})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
