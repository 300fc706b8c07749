"""``grail unlearn --model``: a user's own fine-tuned model (a whole model folder, or base + peft adapter) and a
deletion request as JSONL files; stage 0 never runs and the user's folder is only read."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from tiny_configs import OWN_MODEL_SETTINGS, TINY_RUN, folder_digest

from grail import io
from grail.cli import main
from grail.config import ModelConfig, build_config
from grail.data.builtin import builtin_benchmark
from grail.models import base_weights, load_base, load_trainable, trainable_parameters
from grail.pipeline import Pipeline


@pytest.fixture(scope="module")
def own_models(tmp_path_factory):
    """A user's vanilla model, trained by stage 0 of a tiny LoRA run: as base + adapter, and merged into one model
    folder (``save_pretrained``) whose final norm was also changed (a frozen weight that is not the base's)."""
    root = tmp_path_factory.mktemp("own")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAIL_CACHE", str(root / "cache"))
        pipeline = Pipeline(root / "stage0", build_config(TINY_RUN))
        pipeline.run("finetune")
        pipeline.run_folder.close()
    adapter = root / "adapter"
    io.copy_dir(root / "stage0" / "adapter_vanilla", adapter)
    model, tokenizer = load_trainable(ModelConfig(name="tiny", lora_r=4, lora_alpha=8), 0, adapter)
    whole = model.merge_and_unload()
    with torch.no_grad():
        whole.model.norm.weight.add_(0.25)
    whole.save_pretrained(root / "whole")
    tokenizer.save_pretrained(root / "whole")
    benchmark = builtin_benchmark(seed=0, people=1, books=1)
    files = {}
    for scope in ("forget", "retain", "holdout"):
        files[scope] = root / f"{scope}.jsonl"
        files[scope].write_text("".join(json.dumps({"prompt": ex.prompt, "answer": ex.answer}) + "\n"
                                        for d in benchmark.domains for ex in d.scope(scope)))
    settings = root / "settings.yaml"
    settings.write_text(yaml.safe_dump(OWN_MODEL_SETTINGS))
    return {"adapter": adapter, "whole": root / "whole", "files": files, "settings": settings}


def unlearn_args(own_models, model: Path, out: Path) -> list[str]:
    files = own_models["files"]
    return ["unlearn", "--config", str(own_models["settings"]), "--model", str(model), "--base", "tiny",
            "--forget", str(files["forget"]), "--retain", str(files["retain"]), "--holdout", str(files["holdout"]),
            "--domain", "people", "--out", str(out), "--quiet"]


@pytest.mark.parametrize("kind", ["whole", "adapter"])
def test_an_own_model_is_unlearned_audited_and_exported_without_stage_0(own_models, kind, tmp_path, capsys):
    model = own_models[kind]
    before = folder_digest(model)
    out = tmp_path / "run"
    assert main(unlearn_args(own_models, model, out)) == 0
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    assert (out / "report.md").is_file() and (out / "results.json").is_file()
    timings = io.read_json(out / "timings.json")
    assert "stage0_finetune" not in timings and not (out / "checkpoints" / "finetune").exists()
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"]["name"] == "tiny"
    if kind == "whole":
        assert config["model"]["vanilla"] == str(model.absolute()) and config["model"]["adapter"] == "full"
    else:
        assert config["finetune"]["adapter_path"] == str(model.absolute())
    assert main(["audit", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["frozen_entries"] > 0
    assert main(["attack", str(out), "--quiet"]) == 0  # no oracle: judged against the holdout
    attacks = (out / "attacks.md").read_text()
    assert attacks.startswith("# Attacks against the holdout (no oracle)") and "every AUC's CI holds 0.5" in attacks
    summary = io.read_json(out / "attacks.json")
    assert summary["reference"] == "holdout" and summary["models"] == ["vanilla", "grail"]
    assert not (out / "adapter_oracle").exists()
    assert main(["export", str(out), str(tmp_path / "exported"), "--merged", "--threads", "1"]) == 0
    assert (tmp_path / "exported" / "model.safetensors").is_file()
    assert main(unlearn_args(own_models, model, out)) == 0  # the same command again: the finished run resumes
    assert folder_digest(model) == before  # the user's folder is only read


def test_a_whole_model_folder_keeps_the_base_and_the_vanilla_weights_apart(own_models, tmp_path):
    """The base model is model.name's, every weight of it (the norm the folder changed too); the vanilla model is
    the folder's, every weight of it."""
    config = ModelConfig(name="tiny", adapter="full", vanilla=str(own_models["whole"]))
    model, _ = load_trainable(config)
    base, _ = load_base(ModelConfig(name="tiny"))
    from transformers import AutoModelForCausalLM

    vanilla = dict(AutoModelForCausalLM.from_pretrained(own_models["whole"]).named_parameters())
    assert all(torch.equal(p, vanilla[n]) for n, p in model.named_parameters())
    base_params = dict(base.named_parameters())
    with base_weights(model):
        assert all(torch.equal(p, base_params[n]) for n, p in model.named_parameters())
    assert all(torch.equal(p, vanilla[n]) for n, p in model.named_parameters())
    assert trainable_parameters(model)  # the linear weights train


@pytest.mark.parametrize(("change", "named"), [
    ({"--model": "missing-folder"}, "--model"),
    ({"--forget": "bad.jsonl"}, "bad.jsonl line 2"),
    ({"--retain": "absent.jsonl"}, "absent.jsonl: no such file"),
    ({"--base": None}, "--base"),
    ({"--domain": None}, "forget.jsonl line 1: no field 'domain'"),
])
def test_bad_input_is_exit_2_naming_the_file_or_flag_and_writes_nothing(own_models, tmp_path, capsys, change, named):
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a", "answer": "b"}\n{"prompt": "a"\n')
    args = unlearn_args(own_models, own_models["whole"], tmp_path / "run")
    for flag, value in change.items():
        at = args.index(flag)
        args[at:at + 2] = [] if value is None else [flag, str(tmp_path / value)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert named in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_the_own_model_flags_need_model(tmp_path, capsys):
    assert main(["unlearn", "--preset", "smoke", "--forget", "f.jsonl", "--out", str(tmp_path / "run")]) == 2
    assert "--forget: only with --model" in capsys.readouterr().err


def test_model_vanilla_is_a_whole_model_folder_trained_in_its_linear_weights(own_models, tmp_path):
    from grail.config import ConfigError
    from grail.run_folder import RunFolderError

    with pytest.raises(ConfigError, match="model.adapter must be 'full' with model.vanilla"):
        build_config({"model": {"name": "tiny", "vanilla": str(own_models["whole"])}})
    with pytest.raises(ConfigError, match="keep one"):
        build_config({"model": {"name": "tiny", "adapter": "full", "vanilla": str(own_models["whole"])},
                      "finetune": {"adapter_path": str(own_models["adapter"])}})
    missing = build_config({"model": {"name": "tiny", "adapter": "full", "vanilla": str(tmp_path / "none")}})
    with pytest.raises((ConfigError, RunFolderError), match="model.vanilla"):
        Pipeline(tmp_path / "run", missing)
    assert not (tmp_path / "run").exists()
