"""grail export: the unlearned model loads in a fresh process without grail and gives the run's logits."""

import json
import os
import subprocess
import sys

import pytest
import torch
from tiny_configs import TINY_RUN

from grail.cli import main
from grail.config import build_config, read_yaml_mapping
from grail.models import load_base, make_trainable

TEXT = "Personal record of Mara Lindqvist. Phone number:"
FRESH_PROCESS = """
import sys
sys.modules["grail"] = None  # the exported folder must load without grail
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, out = sys.argv[1], sys.argv[2]
model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
ids = tokenizer(sys.argv[3], return_tensors="pt").input_ids
with torch.no_grad():
    torch.save({"ids": ids, "logits": model(ids).logits, "class": type(model).__name__}, out)
"""


@pytest.fixture(scope="module")
def lora_run(cli_run):
    return cli_run(TINY_RUN, "lora")


@pytest.fixture(scope="module")
def full_run(cli_run):
    return cli_run({**TINY_RUN, "model": {"name": "tiny", "adapter": "full"}}, "full")


def run_logits(run):
    """The run's unlearned model as grail scores it."""
    config = build_config(read_yaml_mapping(run / "config.yaml"))
    model, tokenizer = load_base(config.model, config.seed)
    model = make_trainable(model, config.model, run / "adapter_unlearned").eval()
    ids = tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.no_grad():
        return ids, model(ids).logits


def fresh_logits(folder, tmp_path):
    out = tmp_path / "fresh.pt"
    subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(folder), str(out), TEXT], check=True)
    return torch.load(out)


def test_adapter_export_loads_without_grail_with_the_same_logits(lora_run, tmp_path):
    base_folder = tmp_path / "base"
    config = build_config(read_yaml_mapping(lora_run / "config.yaml"))
    model, tokenizer = load_base(config.model, config.seed)
    model.save_pretrained(base_folder)
    tokenizer.save_pretrained(base_folder)
    out = tmp_path / "adapter"
    assert main(["export", str(lora_run), str(out), "--base-model", str(base_folder)]) == 0
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base_folder)
    fresh = fresh_logits(out, tmp_path)
    ids, logits = run_logits(lora_run)
    assert torch.equal(fresh["ids"], ids)
    torch.testing.assert_close(fresh["logits"], logits, rtol=0, atol=1e-6)
    card = (out / "README.md").read_text()
    assert "library_name: peft" in card and f"base_model: {base_folder}" in card and "That is a local folder" in card
    facts = json.loads((out / "grail_export.json").read_text())
    assert facts["form"] == "adapter" and facts["domains"]["privacy"]["forget"] == 4
    grail_us = facts["evaluations"]["grail"]["domains"]["privacy"]["US"]
    assert f"| **grail** (this model) | privacy | {grail_us:.1f} |" in card  # the run's own measurement
    assert "AutoModelForCausalLM.from_pretrained(FOLDER)" in card


def test_merged_export_is_a_plain_model_with_the_same_logits(lora_run, tmp_path):
    out = tmp_path / "merged"
    assert main(["export", str(lora_run), str(out), "--merged"]) == 0
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    fresh = fresh_logits(out, tmp_path)
    assert fresh["class"] == "LlamaForCausalLM"
    _, logits = run_logits(lora_run)
    torch.testing.assert_close(fresh["logits"], logits, rtol=1e-4, atol=1e-5)  # merging reorders float sums
    assert "library_name: transformers" in (out / "README.md").read_text()


def test_a_full_adapter_run_exports_merged_with_its_trained_weights(full_run, tmp_path):
    out = tmp_path / "full"
    assert main(["export", str(full_run), str(out)]) == 0  # no adapter to ship alone: merged
    assert json.loads((out / "grail_export.json").read_text())["form"] == "merged"
    fresh = fresh_logits(out, tmp_path)
    _, logits = run_logits(full_run)
    torch.testing.assert_close(fresh["logits"], logits, rtol=0, atol=1e-6)


def test_export_refuses_what_it_cannot_do_and_overwrites_nothing(lora_run, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("a user's file")
    assert main(["export", str(lora_run), str(taken), "--merged"]) == 2
    assert "exists; grail export never overwrites" in capsys.readouterr().err
    assert [p.name for p in taken.iterdir()] == ["mine.txt"]
    assert main(["export", str(lora_run), str(tmp_path / "a")]) == 2  # the tiny base has no hub id
    assert "has no hub id to point an adapter at: pass --base-model" in capsys.readouterr().err
    assert main(["export", str(lora_run), str(tmp_path / "b"), "--method", "npo"]) == 2
    err = capsys.readouterr().err
    assert "no unlearned model of method 'npo'" in err and "the run has ['grail']" in err
    assert main(["export", str(tmp_path), str(tmp_path / "c")]) == 2
    assert not any(p.name in ("a", "b", "c") or p.name.startswith(".") for p in tmp_path.iterdir())


@pytest.mark.parametrize("where", ["under_a_file", "name_too_long"])
def test_an_export_folder_that_cannot_be_written_is_exit_2_naming_it(lora_run, tmp_path, capsys, where):
    (tmp_path / "file").write_text("a user's file")
    out = tmp_path / "file" / "export" if where == "under_a_file" else tmp_path / ("x" * 300)
    assert main(["export", str(lora_run), str(out), "--merged"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"grail export: {out}: cannot write here ("), err
    assert (tmp_path / "file").read_text() == "a user's file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder: needs another user")
def test_an_export_folder_under_a_read_only_folder_is_exit_2_naming_it(lora_run, tmp_path, capsys):
    shelf = tmp_path / "read-only"
    shelf.mkdir(mode=0o555)
    assert main(["export", str(lora_run), str(shelf / "export"), "--merged"]) == 2
    assert capsys.readouterr().err.strip() == (f"grail export: {shelf / 'export'}: cannot write here (Permission "
                                               "denied)")
