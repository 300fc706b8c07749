"""Shared fixtures: a tiny Llama (random weights, small BPE tokenizer) and a tiny benchmark, on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_configs import lora_on

from grail.batching import encode_all
from grail.config import ModelConfig
from grail.data.builtin import builtin_benchmark
from grail.models import load_base


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own model/adapter cache, so no test sees another's vanilla adapter."""
    monkeypatch.setenv("GRAIL_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_base():
    return load_base(ModelConfig(name="tiny"))


@pytest.fixture
def tiny_lora(tiny_base):
    """A fresh LoRA model on the tiny base (the base is shared and frozen)."""
    base, tokenizer = tiny_base
    return lora_on(base), tokenizer


@pytest.fixture(scope="session")
def tiny_bench():
    return builtin_benchmark(seed=0, people=2, books=2)


@pytest.fixture
def tiny_encoded(tiny_base, tiny_bench):
    _, tokenizer = tiny_base
    return {f"{d}/{s}": encode_all(tokenizer, ex) for d, s, ex in tiny_bench.datasets()}


@pytest.fixture
def tiny_sets(tiny_encoded):
    """``tiny_encoded`` as stage 3 takes it: (forget examples by domain, retain examples by domain)."""
    return tuple({k.split("/")[0]: v for k, v in tiny_encoded.items() if k.endswith(f"/{scope}")}
                 for scope in ("forget", "retain"))


@pytest.fixture(scope="session")
def cli_run(tmp_path_factory):
    """A function: `grail run --config` of a config dict on a fresh folder with its own cache; returns the folder."""
    import yaml

    from grail.cli import main

    def run(config: dict, name: str) -> Path:
        folder = tmp_path_factory.mktemp("runs") / name
        config_file = folder.parent / f"{name}.yaml"
        config_file.write_text(yaml.safe_dump(config))
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("GRAIL_CACHE", str(tmp_path_factory.mktemp("cache")))
            assert main(["run", "--config", str(config_file), "--out", str(folder), "--quiet"]) == 0
        return folder

    return run
