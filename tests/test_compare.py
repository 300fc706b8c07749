"""`grail compare` on the tiny model: every method runs, moves only what it may, and lands in the tables."""

import dataclasses
import hashlib

import pytest
import torch

from grail import io
from grail.audit import bits_changed
from grail.cli import main
from grail.config import UnlearnConfig
from grail.methods import ABLATIONS, METHODS, STRATEGIES
from grail.models import read_trainable_file

TINY = {
    "model": {"name": "tiny", "adapter": "full"},
    "data": {"people": 1, "books": 1},
    "finetune": {"epochs": 5, "lr": 3e-3},
    "unlearn": {"epochs": 2, "lr": 2e-3, "batch_size": 4, "target": "none",  # a barely trained vanilla
                "divergence_rs_drop": 100.0},
    "localize": {"memflex_mu": 0.99, "memflex_sigma": 0.0},  # the reference thresholds select nothing here
    "evaluate": {"max_new_tokens": 4, "probe": False},
}


@pytest.fixture(scope="module")
def compared(cli_run):
    folder = cli_run(TINY, "cmp")
    vanilla_hash = hashlib.sha256((folder / "adapter_vanilla" / "trained_weights.safetensors").read_bytes())
    assert main(["compare", "--out", str(folder), "--quiet", "--no-attacks", "--methods", ",".join(METHODS)]) == 0
    return folder, vanilla_hash.hexdigest()


@pytest.mark.parametrize("name", ["ga-gd-id", "ga-gd-ood", "ga-kl-id", "ga-kl-ood", "memflex", "grail-paper"])
def test_published_baselines_keep_the_papers_forget_weight(name):
    # resolved as Experiments.unlearn_method resolves it: the run's unlearn section, then the method's overrides
    default = UnlearnConfig()
    assert default.forget_weight == 1.0  # grail's own default, for its own objective (to_base)
    assert dataclasses.replace(default, **METHODS[name].unlearn).forget_weight == 0.4
    assert dataclasses.replace(default, **METHODS["grail"].unlearn).forget_weight == 1.0


def _weights(folder, name):
    sub = folder if name == "grail" else folder / "methods" / name
    return read_trainable_file(sub / "adapter_unlearned"), sub


def test_tables_hold_every_method(compared):
    folder, _ = compared
    document = io.read_json(folder / "comparison" / "comparison.json")
    # base (a model that never saw the data) and vanilla head the tables; the csv adds its header line
    assert [row[0] for row in document["table1"]["rows"]] == ["base", "vanilla", *METHODS]
    assert [row[0] for row in document["table5_hs"]["rows"]] == ["base", "vanilla", *METHODS]
    assert [row[0] for row in document["table4_strategies"]["rows"]] == ["vanilla", *STRATEGIES]
    assert [row[0] for row in document["table6_ablations"]["rows"]] == ["vanilla", *ABLATIONS]
    for stem in ("table1", "table5_hs"):
        text = (folder / "comparison" / f"{stem}.md").read_text()
        assert all(f"| {name} |" in text for name in METHODS)
        assert (folder / "comparison" / f"{stem}.csv").read_text().count("\n") == len(METHODS) + 3


@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if m.masks != "none" and not m.sequential])
def test_masked_methods_never_move_their_frozen_entries(compared, name):
    folder, _ = compared
    vanilla = read_trainable_file(folder / "adapter_vanilla")
    after, sub = _weights(folder, name)
    masks = io.load_tensors(sub / "masks.safetensors")
    moved_free = 0
    for param, before in vanilla.items():
        changed = bits_changed(before, after[param])
        frozen = masks[f"frozen.{param}"]
        assert not (changed & frozen).any(), f"{name}: frozen entries of {param} moved"
        moved_free += int((changed & ~frozen).sum())
        if METHODS[name].masks == "memflex":  # whole tensors: frozen or not
            assert frozen.all() or not frozen.any()
    assert moved_free > 0


@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if m.masks == "none"])
def test_unmasked_methods_move_every_tensor_and_leave_the_reference_alone(compared, name):
    folder, vanilla_hash = compared
    vanilla = read_trainable_file(folder / "adapter_vanilla")
    after, _ = _weights(folder, name)
    assert all(not torch.equal(before, after[p]) for p, before in vanilla.items())
    # the vanilla model (GA+KL's reference) is never written to
    assert hashlib.sha256((folder / "adapter_vanilla" / "trained_weights.safetensors").read_bytes()).hexdigest() \
        == vanilla_hash


@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if m.sequential])
def test_sequential_strategies_keep_each_phases_frozen_set(compared, name):
    """Entries frozen in every phase never move; each phase's masks are its single domain's GRAIL masks."""
    folder, _ = compared
    vanilla = read_trainable_file(folder / "adapter_vanilla")
    after, sub = _weights(folder, name)
    phase_masks = [io.load_tensors(sub / f"masks_{d}.safetensors") for d in METHODS[name].domains]
    for param, before in vanilla.items():
        always = phase_masks[0][f"frozen.{param}"] & phase_masks[1][f"frozen.{param}"]
        assert not (bits_changed(before, after[param]) & always).any()


def test_single_domain_strategies_unlearn_only_their_domain(compared):
    folder, _ = compared
    for name, domain in (("only-privacy", "privacy"), ("only-copyright", "copyright")):
        _, sub = _weights(folder, name)
        log = io.read_json(sub / "adapter_unlearned" / "training_log.json")
        assert log and all(epoch["ascending"] == [domain] for epoch in log)
    log = io.read_json(folder / "methods" / "sequential-c-p" / "adapter_unlearned" / "training_log.json")
    assert [e["ascending"] for e in log] == [["copyright"]] * 2 + [["privacy"]] * 2


def test_the_forgetting_matched_comparison_holds_every_method_to_the_calibrated_target(compared):
    """``--target calibrated``: each method is stored apart under that target, checked as often as the run's own
    (the published baselines check theirs once an epoch), and the tables say how calibrated each model is."""
    folder, _ = compared
    assert main(["compare", "--out", str(folder), "--quiet", "--no-attacks", "--methods", "ga-gd-id,grail",
                 "--target", "calibrated"]) == 0
    for name in ("ga-gd-id-calibrated", "grail-calibrated"):
        log = io.read_json(folder / "methods" / name / "adapter_unlearned" / "training_log.json")
        assert all(set(epoch["target"]) == {"privacy", "copyright"} and "auc_base" in epoch["target"]["privacy"]
                   for epoch in log)
    own = io.read_json(folder / "methods" / "ga-gd-id" / "adapter_unlearned" / "training_log.json")
    assert all("auc" not in m for epoch in own for m in epoch.get("target", {}).values())  # its own: US >= 90
    document = io.read_json(folder / "comparison-calibrated" / "comparison.json")
    header, rows = document["table_calibration"]["header"], document["table_calibration"]["rows"]
    assert [row[0] for row in rows] == ["base", "vanilla", "ga-gd-id", "grail"]
    assert "privacy AUC (base)" in header and all(row[header.index("privacy AUC (base)")] is not None for row in rows)
    calibrated = io.read_json(folder / "evaluations" / "ga-gd-id-calibrated.json")["domains"]["privacy"]
    assert rows[2][header.index("privacy US")] == calibrated["calibration"]["US"]


def test_unknown_method_is_refused_before_any_work(compared, capsys):
    folder, _ = compared
    assert main(["compare", "--out", str(folder), "--quiet", "--methods", "grail,magic"]) == 2
    assert "unknown ['magic']" in capsys.readouterr().err


def test_sweep_runs_grail_per_k_and_draws_fig4(compared):
    folder, _ = compared
    assert main(["sweep", "--out", str(folder), "--quiet", "--k-ur", "5,20", "--k-rr", "20,30"]) == 0
    sweep = io.read_json(folder / "comparison" / "sweep.json")
    assert list(sweep) == ["grail-kur-5", "grail-kur-20", "grail-krr-20", "grail-krr-30"]
    # k_RR 20 at the run's k_UR is GRAIL itself: its scores, not a second training
    assert not (folder / "methods" / "grail-krr-20").exists()
    grail = io.read_json(folder / "evaluations" / "grail.json")["domains"]
    assert sweep["grail-krr-20"]["domains"] == {d: {k: s[k] for k in ("US", "RS", "HS")} for d, s in grail.items()}
    assert (folder / "comparison" / "fig4_sweep.png").stat().st_size > 1000
    frozen = {n: sum(int(m.sum()) for k, m in io.load_tensors(folder / "methods" / n / "masks.safetensors").items()
                     if k.startswith("op_ur.")) for n in ("grail-kur-5", "grail-kur-20")}
    assert frozen["grail-kur-5"] < frozen["grail-kur-20"]
    assert main(["sweep", "--out", str(folder), "--quiet", "--k-ur", "five"]) == 2


LOCAL_TASK = """task: tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
"""


def test_general_evaluation_with_a_local_lm_eval_task_and_the_offline_fallback(compared, tmp_path, capsys):
    folder, _ = compared
    data = tmp_path / "tiny_mc.jsonl"
    data.write_text('{"question": "What is the capital of France?", "choices": ["Paris", "Rome"], "answer": 0}\n'
                    '{"question": "How many days are in a week?", "choices": ["three", "seven"], "answer": 1}\n')
    (tmp_path / "tiny_mc.yaml").write_text(LOCAL_TASK.format(data=data))
    assert main(["evaluate", "--out", str(folder), "--quiet", "--general", "--tasks", "tiny_mc",
                 "--include-path", str(tmp_path)]) == 0
    result = io.read_json(folder / "evaluations" / "general_vanilla.json")
    assert result["source"] == "lm-eval" and 0.0 <= result["tasks"]["tiny_mc"] <= 100.0
    table = (folder / "comparison" / "table2_general.md").read_text()
    assert all(f"| {name} |" in table for name in ["vanilla", *METHODS])
    # the hub is out of reach here: the paper's tasks fall back to the probe, with a message
    assert main(["evaluate", "--out", str(folder), "--quiet", "--general", "--tasks", "arc_challenge",
                 "--limit", "2"]) == 0
    assert io.read_json(folder / "evaluations" / "general_grail.json")["source"] == "built-in probe"
    assert "reporting the built-in probe instead" in capsys.readouterr().err
