"""The run folder and the command line against careless use: each probe gets a named error (exit 2), and
nothing the user had is lost or overwritten."""

import json
import logging
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from grail import io
from grail.cli import EXIT_AUDIT_FAILED, EXIT_BAD_INPUT, EXIT_CRASH, main
from grail.config import ConfigError, build_config, load_config
from grail.data.builtin import builtin_benchmark
from grail.data.examples import DataError
from grail.data.loaders import load_jsonl
from grail.data.sources import load_benchmark
from grail.run_folder import RunFolder, RunFolderError

JSONL_CONFIG = {"model": {"name": "tiny"}, "data": {"source": "jsonl"}}


@pytest.fixture(scope="module")
def tiny_run(cli_run):
    """A finished tiny run (copy it before changing it)."""
    from test_run import TINY

    return cli_run(TINY, "careless")


def _jsonl_config(path) -> dict:
    return {**JSONL_CONFIG, "data": {"source": "jsonl", "path": str(path)}}


def _config_file(tmp_path, config: dict, name: str = "c.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_second_process_is_refused_while_the_first_holds_the_folder(tmp_path):
    folder = tmp_path / "run"
    RunFolder(folder, build_config({"model": {"name": "tiny"}}), load_benchmark)  # this process holds it now
    done = subprocess.run([sys.executable, "-m", "grail.cli", "evaluate", "--out", str(folder), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    assert f"in use by another grail process (pid {os.getpid()})" in done.stderr
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "config.yaml", "data.jsonl"]


def test_data_edited_between_an_interrupted_run_and_its_resume_is_refused(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text(builtin_benchmark(seed=0, people=1, books=1).to_jsonl())
    config = build_config(_jsonl_config(data))
    RunFolder(tmp_path / "run", config, load_benchmark)
    RunFolder(tmp_path / "run", None, load_benchmark)  # unchanged: resumes
    data.write_text(builtin_benchmark(seed=1, people=1, books=1).to_jsonl())
    with pytest.raises(RunFolderError, match=f"the data changed since this run began: {data}"):
        RunFolder(tmp_path / "run", None, load_benchmark)
    assert load_jsonl(tmp_path / "run" / "data.jsonl") == builtin_benchmark(seed=0, people=1, books=1)


def test_bad_data_writes_nothing_and_the_fixed_command_then_runs(tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    good.write_text(builtin_benchmark(seed=0, people=1, books=1).to_jsonl())
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"domain": "a", "scope": "forget"}\n')
    config_file = _config_file(tmp_path, _jsonl_config(bad))
    out = tmp_path / "run"
    assert main(["finetune", "--config", str(config_file), "--out", str(out), "--quiet"]) == EXIT_BAD_INPUT
    assert f"{bad} line 1: missing field 'prompt'" in capsys.readouterr().err
    assert not out.exists()
    config_file.write_text(yaml.safe_dump(_jsonl_config(good)))  # the path fixed: accepted
    RunFolder(out, load_config(config_file), load_benchmark)


def test_non_utf8_data_and_unusable_domain_names_are_named(tmp_path):
    path = tmp_path / "latin1.jsonl"
    good = builtin_benchmark(seed=0, people=1, books=1).to_jsonl().encode()
    path.write_bytes(good.replace(b"Phone number", b"T\xe9l\xe9phone", 1))
    with pytest.raises(DataError, match=f"{path} line 1: not UTF-8 text"):
        load_jsonl(path)
    for name in ("medical/records", "a:b", "../up"):
        path.write_text(good.decode().replace('"domain": "privacy"', f'"domain": "{name}"'))
        with pytest.raises(DataError, match=r"line 1: domain name .* may hold only letters"):
            load_jsonl(path)


@pytest.mark.parametrize("text,message", [
    ("- model\n- data\n", "expected a mapping of sections"),
    ("just a string\n", "expected a mapping of sections"),
    ("unlearn:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n", r"line 4: key 'lr' repeats the one on line 2"),
])
def test_config_files_that_are_not_configs(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)
    with pytest.raises(ConfigError, match="is a folder, not a YAML file"):
        load_config(tmp_path)


def test_out_that_is_a_file_or_not_writable(tmp_path, capsys, monkeypatch):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert main(["finetune", "--preset", "smoke", "--out", str(notes), "--quiet"]) == EXIT_BAD_INPUT
    assert "is a file, not a folder" in capsys.readouterr().err and notes.read_text() == "mine"

    def read_only(path, data):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(io, "write_bytes", read_only)
    assert main(["finetune", "--preset", "smoke", "--out", str(tmp_path / "ro"), "--quiet"]) == EXIT_BAD_INPUT
    assert "cannot write here (Permission denied)" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["sweep", "--k-ur", "200"], "--k-ur: percentages in (0, 100], got [200.0]"),
    (["sweep", "--k-rr", "-5"], "--k-rr: percentages in (0, 100], got [-5.0]"),
    (["sweep", "--k-ur", "ten"], "--k-ur: comma-separated percentages"),
    (["compare", "--methods", "grail,magic"], "--methods: unknown ['magic']"),
    (["run", "--device", "nonsense"], "--device: 'nonsense' is not a torch device"),
])
def test_bad_arguments_are_named_before_a_folder_is_made(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert main([*argv, "--preset", "smoke", "--out", str(out), "--quiet"]) == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_named(tmp_path, capsys):
    assert main(["run", "--preset", "smoke", "--device", "cuda", "--out", str(tmp_path / "r")]) == EXIT_BAD_INPUT
    assert "no CUDA device is available" in capsys.readouterr().err


def test_audit_of_a_truncated_adapter_names_the_file(tiny_run, tmp_path, capsys):
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_run, damaged)
    weights = damaged / "adapter_unlearned" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert main(["audit", str(damaged)]) == EXIT_BAD_INPUT
    assert f"{weights}: not a readable safetensors file" in capsys.readouterr().err


def test_run_exits_1_when_its_own_audit_fails_and_3_on_a_bug(tiny_run, tmp_path, monkeypatch):
    from grail import pipeline as run_module

    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)
    failing = {"policy": "paper", "ok": False, "frozen_entries": 10, "frozen_changed": 1, "free_entries": 5,
               "free_changed": 5}
    monkeypatch.setattr(run_module, "audit", lambda folder: failing)
    assert main(["run", "--out", str(copy), "--quiet"]) == EXIT_AUDIT_FAILED

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(run_module, "results_document", broken)
    assert main(["run", "--out", str(copy), "--quiet"]) == EXIT_CRASH


def test_memflex_thresholds_without_memflex_are_warned_about(tmp_path):
    from grail.cli import _warn_unused_memflex
    from grail.config import LocalizeConfig

    changed = LocalizeConfig(memflex_mu=0.5)
    with pytest.warns(UserWarning, match=r"localize.memflex_mu ignored: only the memflex method"):
        _warn_unused_memflex(changed, [])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_unused_memflex(changed, ["grail", "memflex"])  # used: no warning
        _warn_unused_memflex(LocalizeConfig(), [])  # defaults: nothing to say


def test_a_non_finite_number_in_the_config_is_bad_input(tmp_path, capsys):
    """lr .inf trained a broken model that passed its audit; now the command stops before anything is made."""
    config = {"model": {"name": "tiny"}, "data": {"people": 1, "books": 1}, "finetune": {"lr": float("inf"),
                                                                                       "epochs": 1}}
    config_file = _config_file(tmp_path, config)
    out = tmp_path / "run"
    assert main(["finetune", "--config", str(config_file), "--out", str(out), "--quiet"]) == EXIT_BAD_INPUT
    assert f"{config_file}: finetune.lr: must be a finite number, got inf" in capsys.readouterr().err
    assert not out.exists()


def test_a_lone_surrogate_in_the_data_is_bad_input_not_a_crash(tmp_path, capsys):
    lines = builtin_benchmark(seed=0, people=1, books=1).to_jsonl().splitlines()
    record = json.loads(lines[2])
    lines[2] = json.dumps({**record, "answer": record["answer"] + " \ud800"})  # valid JSON: "... \\ud800"
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    config_file = _config_file(tmp_path, _jsonl_config(data))
    assert main(["finetune", "--config", str(config_file), "--out", str(out), "--quiet"]) == EXIT_BAD_INPUT
    assert f"{data} line 3: field 'answer' is not valid Unicode text" in capsys.readouterr().err
    assert not out.exists()


def test_relative_data_paths_resume_from_any_directory(tmp_path, monkeypatch, caplog):
    """The folder keeps the data it began with: from a directory where the relative paths lead nowhere, a resume
    uses data.jsonl (and says so); where they lead to the data, it is still checked against data.jsonl."""
    start, elsewhere, folder = tmp_path / "start", tmp_path / "elsewhere", tmp_path / "run"
    start.mkdir()
    elsewhere.mkdir()
    (start / "d.jsonl").write_text(builtin_benchmark(seed=0, people=1, books=1).to_jsonl())
    config = build_config({"model": {"name": "tiny"}, "data": {"source": "jsonl", "path": "d.jsonl", "domains": [
        "privacy", {"name": "books", "source": "jsonl", "path": "./d.jsonl", "domain": "copyright"}]}})
    monkeypatch.chdir(start)
    first = RunFolder(folder, config, load_benchmark)
    first.close()

    monkeypatch.chdir(elsewhere)
    with caplog.at_level(logging.INFO, logger="grail"):
        resumed = RunFolder(folder, None, load_benchmark)
    resumed.close()
    assert resumed.benchmark == first.benchmark and resumed.data_hash == first.data_hash
    assert resumed.benchmark.domain_names == ["privacy", "books"]
    assert f"d.jsonl: no such file; resuming with the data this run began with ({folder / 'data.jsonl'})" \
        in caplog.text
    RunFolder(folder, config, load_benchmark).close()  # the same config given again: resumes as well
    with pytest.raises(DataError, match="d.jsonl: no such file"):  # a new run still needs its data
        RunFolder(tmp_path / "new", config, load_benchmark)
    assert not (tmp_path / "new").exists()

    monkeypatch.chdir(start)
    (start / "d.jsonl").write_text(builtin_benchmark(seed=1, people=1, books=1).to_jsonl())
    with pytest.raises(RunFolderError, match="the data changed since this run began"):
        RunFolder(folder, None, load_benchmark)


@pytest.mark.parametrize("name", ["./no-such-model", "~/no-such-model", "/no/such/model", "models/no/such"])
def test_a_model_path_that_does_not_exist_is_named_before_the_folder_is_made(tmp_path, capsys, monkeypatch, name):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    config_file = _config_file(tmp_path, {"model": {"name": name}, "data": {"people": 1, "books": 1}})
    out = tmp_path / "run"
    assert main(["finetune", "--config", str(config_file), "--out", str(out), "--quiet"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"model.name: {name!r} is not a local folder" in err and "Repo id" not in err
    assert not out.exists()
    (tmp_path / "models" / "no" / "such").mkdir(parents=True)  # the path corrected: the same --out is accepted
    config_file.write_text(yaml.safe_dump({"model": {"name": "./models/no/such"}, "data": {"people": 1, "books": 1}}))
    RunFolder(out, load_config(config_file), load_benchmark).close()


def test_a_hub_id_is_accepted_without_reaching_the_hub(tmp_path):
    RunFolder(tmp_path / "run", build_config({"model": {"name": "someone/some-model"}}), load_benchmark).close()
