"""``grail attack`` and ``grail audit --evidence`` end to end on the tiny model, and the oracle's data."""

import json
import shutil

import pytest
from scipy.stats import ks_2samp
from tiny_configs import TINY_RUN

from grail import io
from grail.batching import encode_all
from grail.cli import main
from grail.config import build_config
from grail.data.examples import PARAPHRASE_SET
from grail.pipeline import Pipeline

TINY = {**TINY_RUN, "evaluate": {"max_new_tokens": 4, "probe": False},
        "attack": {"relearn_steps": [0, 2], "precisions": ["int8", "nf4"], "bootstrap": 50}}
SECTIONS = ("mia", "relearn", "precision", "prompts", "verdicts")


@pytest.fixture(scope="module")
def attacked_run(cli_run, tmp_path_factory):
    folder = cli_run(TINY, "attacked")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAIL_CACHE", str(tmp_path_factory.mktemp("cache")))
        assert main(["attack", str(folder), "--quiet"]) == 0
    return folder


def test_attack_writes_every_section_for_every_model(attacked_run):
    summary = io.read_json(attacked_run / "attacks.json")
    assert summary["models"] == ["oracle", "vanilla", "grail"]
    for section in SECTIONS:
        for domain in ("privacy", "copyright"):
            by_model = summary[section][domain] if section != "verdicts" else {
                m: summary[section][m][domain] for m in summary["models"]}
            # the vanilla model was never unlearned: the precision attack leaves it out
            expected = {"oracle", "grail"} if section == "precision" else {"oracle", "vanilla", "grail"}
            assert set(by_model) == expected, (section, domain)
    assert summary["verdicts"]["vanilla"]["privacy"]["precision"] == "n/a"
    assert summary["relearn"]["privacy"]["grail"]["curve"].keys() == {"0", "2"}
    assert set(summary["precision"]["copyright"]["grail"]) == {"float32", "int8", "nf4"}
    assert set(summary["prompts"]["copyright"]["grail"]) == {"ignore_instructions", "paraphrase", "few_shot",
                                                             "prefix_completion"}
    assert summary["mia"]["privacy"]["oracle"]["loss"]["privleak"] == 0.0
    # the calibrated stop's reference judged by the oracle: the vanilla model's holdout losses against its forget ones
    raw = {m: io.read_json(attacked_run / "attacks" / m / "mia.json")["result"]["privacy"]
           for m in ("oracle", "vanilla")}
    assert summary["mia"]["privacy"]["vanilla"]["holdout_vs_oracle_forget"] == pytest.approx(
        ks_2samp(raw["vanilla"]["holdout"]["loss"], raw["oracle"]["forget"]["loss"]).pvalue)
    assert "holdout_vs_oracle_forget" not in summary["mia"]["privacy"]["grail"]
    text = (attacked_run / "attacks.md").read_text()
    assert "The calibrated stop's reference, the holdout under the vanilla model" in text
    for title in ("Membership inference: privacy", "Relearning: copyright", "Precision: privacy",
                  "Prompt attacks: copyright", "Verdicts"):
        assert f"## {title}" in text
    for name in ("relearning.png", "adapter_oracle/adapter_model.safetensors", "evaluations/oracle.json",
                 "attacks/grail/relearn.json", "attacks/oracle/mia.json", "attacks/vanilla/prompts.json"):
        assert (attacked_run / name).is_file(), name


def test_a_second_attack_reuses_every_model_report(attacked_run, monkeypatch):
    before = {p: p.stat().st_mtime_ns for p in (attacked_run / "attacks").rglob("*.json")}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished attack was computed again")

    monkeypatch.setattr("grail.attacks.runner.relearn.relearn", no_training)
    assert main(["attack", str(attacked_run), "--quiet"]) == 0
    assert {p: p.stat().st_mtime_ns for p in (attacked_run / "attacks").rglob("*.json")} == before
    assert not (attacked_run / "attacks" / "vanilla" / "precision.json").exists()


def test_an_attack_made_with_other_settings_is_computed_again(attacked_run):
    stored = attacked_run / "attacks" / "grail" / "relearn.json"
    report = io.read_json(stored)
    # keyed by the model's weights too: a model trained again is attacked again
    assert report["settings"]["weights"] == {name: io.file_sha256(path) for name, path in (
        (p.name, p) for p in sorted((attacked_run / "adapter_unlearned").iterdir()))}
    io.write_json(stored, {**report, "settings": {**report["settings"], "lr": 1.0}, "result": {}})
    assert main(["attack", str(attacked_run), "--quiet"]) == 0
    assert io.read_json(stored) == {**report, "seconds": io.read_json(stored)["seconds"]}


def test_evidence_bundle(attacked_run):
    assert main(["audit", str(attacked_run), "--evidence", "--quiet"]) == 0
    evidence = io.read_json(attacked_run / "evidence" / "evidence.json")
    assert len(evidence["sha256"]["data.jsonl"]) == 64 and len(evidence["sha256"]["base_model_weights"]) == 64
    assert set(evidence["sha256"]["adapters"]) == {"oracle", "vanilla", "grail"}
    assert evidence["versions"]["torch"] and evidence["seeds"]["run"] == 0 and evidence["audit"]["ok"]
    assert set(evidence["verdicts"]["grail"]["privacy"]) == {"membership_inference", "forget_quality", "relearning",
                                                            "precision", "prompts"}
    records = [json.loads(line) for line in (attacked_run / "evidence" / "per_example.jsonl").read_text().splitlines()]
    # 3 models x (4 + 4 privacy, 2 + 2 copyright forget and holdout examples)
    assert len(records) == 3 * 12
    forget = next(r for r in records if r["set"] == "forget")
    assert set(forget["mia"]) == {"loss", "zlib", "min_k", "min_k_plus_plus"} and "int8" in forget[
        "leaked_under_precision"]
    # the built-in data names no kinds: every forget example is set against the holdout, no holdout record is marked
    assert all(r["member"] for r in records if r["set"] == "forget")
    assert not any("member" in r for r in records if r["set"] == "holdout")


def test_attack_without_holdout_names_the_missing_data(tmp_path, cli_run, capsys):
    from grail.data.builtin import builtin_benchmark

    data = tmp_path / "no_holdout.jsonl"
    data.write_text(builtin_benchmark(seed=0, people=1, books=1).to_jsonl(trained_only=True))
    folder = cli_run({**TINY, "data": {"source": "jsonl", "path": str(data)}, "unlearn": {**TINY["unlearn"],
                                                                                        "epochs": 1}}, "no_holdout")
    assert main(["attack", str(folder), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no holdout examples" in err and "MUSE: privleak/holdout" in err and "TOFU" in err
    assert not (folder / "adapter_oracle").exists()


def test_the_oracle_never_trains_on_a_forget_example(tmp_path, monkeypatch):
    trained_on = {}

    def record(model, datasets, config, **kwargs):
        trained_on[kwargs["checkpoint_dir"].name] = datasets
        return []

    monkeypatch.setattr("grail.pipeline.finetune", record)
    pipeline = Pipeline(tmp_path / "run", build_config(TINY))
    pipeline.stage0_vanilla()
    pipeline.stage0_oracle()
    oracle, vanilla = trained_on["finetune_oracle"], trained_on["finetune"]
    forget = set()
    for domain in pipeline.benchmark.domains:
        forget |= set(encode_all(pipeline.tokenizer, domain.forget + domain.forget_paraphrases()))
    assert forget <= {item for items in vanilla.values() for item in items}
    assert not forget & {item for items in oracle.values() for item in items}
    assert set(oracle) == {name for name in vanilla if name.split("/")[1] not in ("forget", PARAPHRASE_SET)}
    assert all(oracle[name] == vanilla[name] for name in oracle)


def test_compare_adds_the_robustness_table(attacked_run):
    assert main(["compare", "--out", str(attacked_run), "--quiet", "--methods", "ga-gd-id,grail"]) == 0
    table = io.read_json(attacked_run / "comparison" / "comparison.json")["table_robustness"]
    assert [(row[0], row[1]) for row in table["rows"]] == [
        (m, d) for m in ("oracle", "vanilla", "grail", "ga-gd-id") for d in ("privacy", "copyright")]
    assert (attacked_run / "comparison" / "table_robustness.md").is_file()
    assert (attacked_run / "attacks" / "ga-gd-id" / "mia.json").is_file()


@pytest.fixture(scope="module")
def stage0_run(tmp_path_factory):
    """A run that has only stage 0 (grail finetune): no unlearned model yet."""
    import yaml

    folder = tmp_path_factory.mktemp("runs") / "stage0"
    config = folder.parent / "stage0.yaml"
    config.write_text(yaml.safe_dump(TINY))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAIL_CACHE", str(tmp_path_factory.mktemp("cache")))
        assert main(["finetune", "--config", str(config), "--out", str(folder), "--quiet"]) == 0
    return folder


@pytest.mark.parametrize("argv", [["audit"], ["audit", "--evidence", "--quiet"], ["attack", "--quiet"]],
                         ids=["audit", "evidence", "attack"])
def test_a_run_without_an_unlearned_model_is_refused_as_audit_refuses_it(stage0_run, argv, capsys):
    assert main([argv[0], str(stage0_run), *argv[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"grail {argv[0]}: {stage0_run / 'masks.safetensors'}: "
                                                         "missing: no unlearned model: run stage 3 first (grail run / "
                                                         "grail unlearn)"), err
    assert not any((stage0_run / name).exists() for name in ("adapter_oracle", "attacks.json", "evidence"))


def test_attack_of_named_methods_goes_on_without_grails_model(stage0_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(stage0_run, run)
    shutil.copytree(run / "adapter_vanilla", run / "methods" / "mine" / "adapter_unlearned")
    monkeypatch.setenv("GRAIL_CACHE", str(tmp_path / "cache"))
    assert main(["attack", str(run), "--methods", "mine", "--quiet"]) == 0
    assert io.read_json(run / "attacks.json")["models"] == ["oracle", "vanilla", "mine"]
