"""`grail compare` on the tiny model: every method runs, moves only what it may, and lands in the tables; a user's
methods from a YAML file run as the built-in ones do, and a bad file is refused naming the file and the entry."""

import hashlib
import shutil

import pytest
import torch

from grail import cli, io
from grail.audit import bits_changed
from grail.cli import main
from grail.experiments import MASK_BUILDERS
from grail.methods import ABLATIONS, MASKS, METHODS, STRATEGIES, TABLE_I, Method, read_methods_file
from grail.models import read_trainable_file
from grail.stages.localize import load_masks

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
    masks = load_masks(sub / "masks.safetensors")
    moved_free = 0
    for param, before in vanilla.items():
        changed = bits_changed(before, after[param])
        frozen = masks["frozen"][param]
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
    phase_masks = [load_masks(sub / f"masks_{d}.safetensors") for d in METHODS[name].domains]
    for param, before in vanilla.items():
        always = phase_masks[0]["frozen"][param] & phase_masks[1]["frozen"][param]
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
    frozen = {n: sum(int(m.sum()) for m in load_masks(folder / "methods" / n / "masks.safetensors")["op_ur"].values())
              for n in ("grail-kur-5", "grail-kur-20")}
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


# ---- a user's methods: grail compare --methods-file -----------------------------------------------------------------
MY_METHODS = """\
- name: mine
  description: GRAIL with half the retain weight
  masks: grail
  unlearn: {retain_weight: 1.0}
"""


@pytest.fixture(scope="module")
def own_run(compared, tmp_path_factory):
    """A copy of the compared run with only what GRAIL needs (its vanilla, masks and unlearned model): a user's
    method is trained there, leaving the tables of ``compared`` as the tests above read them."""
    source, _ = compared
    folder = tmp_path_factory.mktemp("own") / "run"
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns(".lock", "methods", "checkpoints", "comparison*",
                                                                   "memflex_gradients.safetensors"))
    return folder


def test_a_users_method_runs_like_a_built_in_one_under_its_own_name(own_run, tmp_path):
    methods_file = tmp_path / "my_methods.yaml"
    methods_file.write_text(MY_METHODS)
    assert main(["compare", "--out", str(own_run), "--quiet", "--no-attacks", "--methods-file", str(methods_file),
                 "--methods", "mine,grail"]) == 0
    document = io.read_json(own_run / "comparison" / "comparison.json")
    for table in ("table1", "table5_hs"):
        assert [row[0] for row in document[table]["rows"]] == ["base", "vanilla", "mine", "grail"]
        assert "| mine |" in (own_run / "comparison" / f"{table}.md").read_text()
    # trained from the vanilla model with GRAIL's frozen set, which it never moved
    vanilla = read_trainable_file(own_run / "adapter_vanilla")
    after, sub = _weights(own_run, "mine")
    masks = load_masks(sub / "masks.safetensors")
    assert not any((bits_changed(before, after[p]) & masks["frozen"][p]).any() for p, before in vanilla.items())
    assert any(bits_changed(before, after[p]).any() for p, before in vanilla.items())


def test_a_users_method_on_a_domain_the_data_lacks_is_refused_before_any_work(own_run, tmp_path, capsys):
    methods_file = tmp_path / "my_methods.yaml"
    methods_file.write_text("elsewhere:\n  masks: grail\n  domains: [medicine]\n")
    assert main(["compare", "--out", str(own_run), "--quiet", "--methods-file", str(methods_file)]) == 2
    assert "method 'elsewhere': unknown domain(s) ['medicine']" in capsys.readouterr().err
    assert not (own_run / "methods" / "elsewhere").exists()


BAD_METHOD_FILES = {
    "not yaml": ("- name: mine\n  masks: [grail\n", "line 3: invalid YAML"),
    "empty": ("", "holds no methods"),
    "a scalar": ("mine\n", "expected a list of methods or a mapping of them by name, got a YAML str"),
    "an entry that is no mapping": ("- mine\n", "line 1: a method is a mapping"),
    "no name": ("- masks: grail\n", "line 1: a method needs a name"),
    "a name that is no folder name": ("- name: my method\n", "line 1: a method needs a name"),
    "an unknown key": ("- name: mine\n  mask: grail\n", "line 1: method 'mine': unknown key(s) ['mask']"),
    "a built-in name": ("- name: ga-gd-id\n", "line 1: method 'ga-gd-id': a built-in method has that name"),
    "a model's name": ("vanilla:\n  masks: grail\n", "line 1: method 'vanilla': a model of the run has that name"),
    "bad masks": ("- name: mine\n  masks: everything\n", "line 1: method 'mine': masks must be one of"),
    "bad retain data": ("- name: mine\n  retain_data: web\n", "line 1: method 'mine': retain_data must be one of"),
    "an unknown override": ("- name: mine\n  unlearn: {lrate: 0.1}\n", "method 'mine': unlearn has no field(s) "
                                                                        "['lrate']"),
    "a bad override value": ("- name: mine\n  unlearn: {lr: -1.0}\n", "method 'mine': unlearn.lr must be"),
    "overrides that are no mapping": ("- name: mine\n  localize: 10\n", "method 'mine': localize must be a mapping"),
    "domains that are no list": ("- name: mine\n  domains: privacy\n", "method 'mine': domains must be a non-empty"),
    "a name twice": ("- name: a\n- name: b\n- name: a\n", "line 3: method 'a': the name repeats the method on line 1"),
    "a key twice": ("a: {}\na: {}\n", "line 2: key 'a' repeats the one on line 1"),
    "a name unlike its key": ("a:\n  name: b\n", "line 1: method 'a' says name 'b'"),
    "the second entry": ("- name: a\n- name: b\n  sequential: maybe\n", "line 2: method 'b': sequential must be"),
}


@pytest.mark.parametrize("case", sorted(BAD_METHOD_FILES))
def test_a_bad_methods_file_is_exit_2_naming_the_file_and_the_entry(case, tmp_path, capsys):
    text, message = BAD_METHOD_FILES[case]
    methods_file = tmp_path / "my_methods.yaml"
    methods_file.write_text(text)
    folder = tmp_path / "run"
    assert main(["compare", "--preset", "smoke", "--out", str(folder), "--methods-file", str(methods_file)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"grail compare: {methods_file}") and message in error, error
    assert not folder.exists()  # refused before the run folder is made


def test_a_missing_methods_file_is_exit_2_naming_it(tmp_path, capsys):
    missing = tmp_path / "nowhere.yaml"
    assert main(["compare", "--preset", "smoke", "--out", str(tmp_path / "run"), "--methods-file", str(missing)]) == 2
    assert f"{missing}: no such file" in capsys.readouterr().err


def test_a_methods_file_as_a_mapping_names_its_methods_by_key(tmp_path):
    methods_file = tmp_path / "my_methods.yaml"
    methods_file.write_text("p-first:\n  masks: grail\n  domains: [privacy, copyright]\n  sequential: true\n"
                            "plain-ga:\n  unlearn: {forget_objective: ascent}\n")
    methods = read_methods_file(methods_file)
    assert list(methods) == ["p-first", "plain-ga"]
    assert methods["p-first"] == Method("p-first", "defined in my_methods.yaml", masks="grail",
                                        domains=("privacy", "copyright"), sequential=True)
    assert methods["plain-ga"].unlearn == {"forget_objective": "ascent"} and methods["plain-ga"].masks == "none"


def test_without_methods_a_methods_file_compares_its_methods_and_grail():
    own = {"mine": Method("mine", "")}
    assert cli._method_names(None, {**METHODS, **own}, [*own, "grail"]) == ["mine", "grail"]
    assert cli._method_names(None) == TABLE_I


def test_every_masks_value_a_method_may_name_has_a_builder():
    assert sorted(MASK_BUILDERS) == sorted(MASKS)
