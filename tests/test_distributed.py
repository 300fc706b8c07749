"""Two processes (torchrun, gloo on CPU) against one: the same masks, one writer, a run that passes its audit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from grail import io
from grail.cli import main
from grail.models import read_trainable_file
from grail.stages.localize import load_masks

CONFIG = {
    "model": {"name": "tiny", "adapter": "lora", "lora_dropout": 0.0},
    "data": {"people": 1, "books": 1},
    "finetune": {"epochs": 4, "lr": 1e-2},
    "gradients": {"batch_size": 4},  # several batches, so each process takes some
    "unlearn": {"epochs": 2, "lr": 2e-3, "batch_size": 4, "target": "none"},
    "evaluate": {"max_new_tokens": 4, "probe": False},
}


def _grail(args: list[str], processes: int, cache) -> None:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] \
        if processes > 1 else [sys.executable]
    # One thread per process in both runs (torchrun's default), so every batch is computed the same way.
    env = {**os.environ, "GRAIL_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launcher, "-m", "grail.cli", *args, "--quiet"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory):
    """The same vanilla model, then stages 1-3 and evaluation by one process and by two."""
    root = tmp_path_factory.mktemp("ddp")
    config_file = root / "config.yaml"
    config_file.write_text(yaml.safe_dump(CONFIG))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAIL_CACHE", str(root / "cache"))
        assert main(["finetune", "--config", str(config_file), "--out", str(root / "one"), "--quiet"]) == 0
    shutil.copytree(root / "one", root / "two")
    _grail(["run", "--out", str(root / "one")], 1, root / "cache")
    _grail(["run", "--out", str(root / "two")], 2, root / "cache")
    # Stages 1-3 by two processes on the model sharded (FSDP2), the vanilla model from the cache.
    sharded_config = root / "fsdp.yaml"
    sharded_config.write_text(yaml.safe_dump({**CONFIG, "distributed": "fsdp"}))
    _grail(["run", "--config", str(sharded_config), "--out", str(root / "fsdp")], 2, root / "cache")
    # Stage 0 by two processes too, in a fresh folder (and cache: no vanilla adapter to reuse).
    _grail(["finetune", "--config", str(config_file), "--out", str(root / "fresh")], 2, root / "cache-fresh")
    return root / "one", root / "two"


def test_two_processes_find_the_same_masks(one_and_two):
    one, two = one_and_two
    masks_one, masks_two = (load_masks(f / "masks.safetensors") for f in (one, two))
    assert all(masks_one[k].keys() == masks_two[k].keys() for k in masks_one)
    assert all(torch.equal(m, masks_two[k][n]) for k, by_name in masks_one.items() for n, m in by_name.items())
    assert sum(int(m.sum()) for m in masks_one["frozen"].values()) > 0
    scores_one, scores_two = (io.load_tensors(f / "importance.safetensors") for f in (one, two))
    for key in scores_one:
        torch.testing.assert_close(scores_two[key], scores_one[key], rtol=1e-6, atol=0)


def test_two_processes_unlearn_like_one(one_and_two):
    one, two = one_and_two
    assert io.read_json(two / "results.json")["audit"]["ok"]
    before = read_trainable_file(two / "adapter_vanilla")
    after_one, after_two = (read_trainable_file(f / "adapter_unlearned") for f in (one, two))
    moved = [name for name in before if not torch.equal(before[name], after_two[name])]
    assert moved  # stage 3 did update the model
    for name in after_one:  # the same update as one process, up to float summation order
        torch.testing.assert_close(after_two[name], after_one[name], rtol=1e-3, atol=1e-5)


def test_two_processes_on_a_sharded_model_localize_and_unlearn_like_one(one_and_two):
    """``distributed: fsdp``: stages 1 and 2 on FSDP2 shards give one process's masks; stage 3 on them, its
    checkpoint written as shards, the unlearned weights gathered and saved whole; evaluated and audited as any
    other run."""
    one, _ = one_and_two
    sharded = one.parent / "fsdp"
    results = io.read_json(sharded / "results.json")
    assert results["audit"]["ok"] and "distributed: fsdp" in (sharded / "config.yaml").read_text()
    assert [p.name for p in (sharded / "checkpoints" / "unlearn").glob("shards-*")] == ["shards-1"]
    masks_one, masks_sharded = (load_masks(f / "masks.safetensors") for f in (one, sharded))
    assert all(torch.equal(m, masks_sharded[k][n]) for k, by_name in masks_one.items() for n, m in by_name.items())
    assert not (sharded / "importance.safetensors").exists()  # each process held its rows of the scores only
    before = read_trainable_file(sharded / "adapter_vanilla")
    after_one, after_sharded = (read_trainable_file(f / "adapter_unlearned") for f in (one, sharded))
    assert any(not torch.equal(before[n], after_sharded[n]) for n in before)
    for name in after_one:
        torch.testing.assert_close(after_sharded[name], after_one[name], rtol=1e-3, atol=1e-5)
    scores_one, scores_sharded = (io.read_json(f / "evaluations" / "grail.json") for f in (one, sharded))
    for domain, scores in scores_one["domains"].items():
        assert scores_sharded["domains"][domain]["US"] == pytest.approx(scores["US"], abs=1e-6)


def test_one_process_writes_and_leaves_no_staging_files(one_and_two):
    _, two = one_and_two
    assert not [p for p in two.rglob("*") if ".tmp" in p.name]
    assert (two / "report.md").is_file() and (two / "evaluations" / "grail.json").is_file()


def test_two_processes_fine_tune_like_one_from_an_empty_folder(one_and_two):
    one, two = one_and_two
    fresh = two.parent / "fresh"
    assert (fresh / "config.yaml").read_text() == (one / "config.yaml").read_text()
    expected, got = (read_trainable_file(f / "adapter_vanilla") for f in (one, fresh))
    for name in expected:  # each process took half of every batch; the summed gradients are the batch's
        torch.testing.assert_close(got[name], expected[name], rtol=1e-3, atol=1e-5)


def test_a_process_without_examples_in_any_batch_still_fine_tunes(tmp_path):
    # Batch size 1 over 2 processes: process 1 never gets a row (as 8 GPUs with the default batch of 4 would).
    config = {**CONFIG, "finetune": {**CONFIG["finetune"], "epochs": 1, "batch_size": 1}}
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    _grail(["finetune", "--config", str(config_file), "--out", str(tmp_path / "run")], 2, tmp_path / "cache")
    log = io.read_json(tmp_path / "run" / "adapter_vanilla" / "training_log.json")
    assert log[0]["loss"] > 0 and set(log[0]["train_accuracy"]) == {
        f"{d}/{s}" for d in ("privacy", "copyright")
        for s in ("forget", "retain", "retain_heldout", "forget_paraphrase")}
