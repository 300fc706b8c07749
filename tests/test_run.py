"""The pipeline end to end on the tiny model: outputs, audit, resume, refusal to overwrite."""

import os
import shutil

import pytest
import torch
import yaml
from tiny_configs import TINY_RUN

from grail import io
from grail.audit import audit
from grail.cli import main
from grail.config import build_config
from grail.models import read_trainable_file
from grail.pipeline import Pipeline
from grail.run_folder import RunFolderError
from grail.stages.localize import load_masks

TINY = TINY_RUN


@pytest.fixture(scope="module")
def finished_run(cli_run):
    return cli_run(TINY, "tiny")


def test_run_folder_holds_every_output(finished_run):
    for name in ("config.yaml", "data.jsonl", "adapter_vanilla/adapter_config.json",
                 "adapter_vanilla/adapter_model.safetensors", "adapter_unlearned/adapter_model.safetensors",
                 "importance.safetensors", "masks.safetensors", "results.json", "report.md"):
        assert (finished_run / name).is_file(), name
    params = read_trainable_file(finished_run / "adapter_vanilla")
    stored = io.load_tensors(finished_run / "masks.safetensors")  # bit-packed on disk
    assert set(stored) == {f"{kind}.{p}" for kind in ("op_ur", "op_rr", "frozen") for p in params}
    assert all(packed.dtype == torch.uint8 for packed in stored.values())
    masks = load_masks(finished_run / "masks.safetensors")
    for by_name in masks.values():
        assert by_name.keys() == params.keys()
        assert all(mask.dtype == torch.bool and mask.shape == params[p].shape for p, mask in by_name.items())
    results = io.read_json(finished_run / "results.json")
    assert list(results["models"]) == ["base", "vanilla", "grail"]
    for name, model in results["models"].items():
        assert {"probe_accuracy", "general_text_ppl", "mmlu_accuracy", "mmlu_logprob"} <= set(model["general"])
        assert model["general"]["mmlu_n"] == 57  # one question per subject
        assert set(model["domains"]) == {"privacy", "copyright"}
        generated = name != "base"  # the model before stage 0 is scored teacher-forced only
        for domain in model["domains"].values():
            assert {"US", "RS", "HS", "RS_heldout", "US_paraphrase"} <= set(domain)
            assert ({"leak_rate", "retain_produced_rate"} <= set(domain)) == generated
            assert ("rouge_l_generation" in domain["forget"]) == generated
            assert domain["retain_heldout"]["n"] == 2 and domain["forget_paraphrase"]["n"] == domain["forget"]["n"]
        assert {"RS_heldout", "US_paraphrase"} <= set(model["average"])
    assert results["audit"]["ok"] and results["audit"]["free_changed"] > 0
    assert "Audit (paper policy): PASS" in (finished_run / "report.md").read_text()


def test_base_entry_scores_the_model_before_fine_tuning(finished_run):
    """The base row is the untrained model: the same scores as a freshly built one (LoRA disabled)."""
    from grail.config import ModelConfig
    from grail.evaluation import general_scores
    from grail.mmlu import load_mmlu, stratified_subset
    from grail.models import load_base

    fresh, tokenizer = load_base(ModelConfig(name="tiny"))
    expected = general_scores(fresh, tokenizer, 32, "cpu", stratified_subset(load_mmlu(), 1))
    base = io.read_json(finished_run / "results.json")["models"]["base"]["general"]
    for key in ("probe_accuracy", "general_text_ppl", "mmlu_accuracy", "mmlu_logprob"):
        assert base[key] == pytest.approx(expected[key], rel=1e-4), key
    # and its forget and retain scores: what a model that never saw the data gets
    from grail.evaluation import evaluate
    from grail.pipeline import Pipeline

    run = Pipeline(finished_run)
    m = run.config.model
    fresh_domains = evaluate(fresh, tokenizer, run.benchmark, m.prompt_format, m.max_length, 32, "cpu")["domains"]
    base_domains = io.read_json(finished_run / "results.json")["models"]["base"]["domains"]
    for domain, scores in fresh_domains.items():
        for key in ("US", "RS", "RS_heldout", "US_paraphrase"):
            assert base_domains[domain][key] == pytest.approx(scores[key], abs=1e-4), (domain, key)
    # stage 0 trained on the replay data, not on the texts that measure it
    replay = [r["instruction"] for r in io.read_jsonl(finished_run / "general_replay.jsonl")]
    from grail.data.general import GENERAL_PROBE, GENERAL_TEXT, UTILITY_CHECK_TEXT

    measuring = {q for q, _ in GENERAL_PROBE} | set(GENERAL_TEXT) | set(UTILITY_CHECK_TEXT)
    assert replay and not set(replay) & measuring


def test_audit_fails_when_a_frozen_entry_changed(finished_run, tmp_path, capsys):
    tampered = tmp_path / "tampered"
    shutil.copytree(finished_run, tampered)
    frozen = load_masks(tampered / "masks.safetensors")["frozen"]
    weights_file = tampered / "adapter_unlearned" / "adapter_model.safetensors"
    weights = io.load_tensors(weights_file)
    name = next(p for p, m in frozen.items() if m.any())
    index = frozen[name].flatten().nonzero()[0]
    weights[name].view(-1)[index] += 1.0
    io.save_tensors(weights_file, weights)
    assert main(["audit", str(finished_run)]) == 0
    assert main(["audit", str(tampered)]) == 1
    assert audit(tampered)["frozen_changed"] == 1


def test_existing_run_of_another_config_is_never_overwritten(finished_run, tmp_path):
    before = (finished_run / "results.json").read_bytes()
    other = build_config({**TINY, "localize": {"k_ur": 5.0}})
    with pytest.raises(RunFolderError, match=r"localize.k_ur: 10.0 -> 5.0"):
        Pipeline(finished_run, other)
    assert (finished_run / "results.json").read_bytes() == before
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("user data")
    with pytest.raises(RunFolderError, match="not a grail run folder"):
        Pipeline(tmp_path / "mine", other)
    assert main(["run", "--preset", "smoke", "--out", str(finished_run), "--quiet"]) == 2


class Interrupt(Exception):
    pass


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, monkeypatch):
    config = build_config(TINY)
    monkeypatch.setenv("GRAIL_CACHE", str(tmp_path / "cache-a"))
    Pipeline(tmp_path / "a", config).run()

    monkeypatch.setenv("GRAIL_CACHE", str(tmp_path / "cache-b"))  # no cached vanilla: stage 0 runs again
    interruptions = [("finetune", 1), ("unlearn", 0)]

    def interrupt(stage, epoch):
        if interruptions and interruptions[0] == (stage, epoch):
            interruptions.pop(0)
            raise Interrupt(f"{stage} epoch {epoch}")

    for _ in range(2):
        with pytest.raises(Interrupt):
            Pipeline(tmp_path / "b", config, on_epoch_end=interrupt).run()
    Pipeline(tmp_path / "b", on_epoch_end=interrupt).run()  # resumes from the folder's own config

    for adapter in ("adapter_vanilla", "adapter_unlearned"):
        a, b = read_trainable_file(tmp_path / "a" / adapter), read_trainable_file(tmp_path / "b" / adapter)
        assert all(torch.equal(a[k], b[k]) for k in a), adapter
    results_a, results_b = (io.read_json(tmp_path / x / "results.json") for x in "ab")
    assert results_a["models"] == results_b["models"]


def test_a_run_trains_the_same_models_whether_stage_0_ran_in_its_process_or_came_from_the_cache(tmp_path,
                                                                                           monkeypatch):
    """Stage 3's dropout draws and its utility budget's reference must not depend on what ran before it."""
    config = build_config(TINY)
    monkeypatch.setenv("GRAIL_CACHE", str(tmp_path / "cache"))
    Pipeline(tmp_path / "fresh", config).run()  # stage 0 trains here, then stage 3 in the same process
    torch.rand(1000)  # whatever else this process drew
    Pipeline(tmp_path / "cached", config).run()  # the vanilla model from the cache
    a, b = (read_trainable_file(tmp_path / x / "adapter_unlearned") for x in ("fresh", "cached"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    logs = [io.read_json(tmp_path / x / "adapter_unlearned" / "training_log.json") for x in ("fresh", "cached")]
    assert logs[0] == logs[1]


def test_a_users_adapter_is_copied_not_trained(finished_run, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAIL_CACHE", str(tmp_path / "cache"))
    byo = str(finished_run / "adapter_vanilla")
    config = build_config({**TINY, "finetune": {**TINY["finetune"], "adapter_path": byo}})
    run = Pipeline(tmp_path / "byo", config)
    run.run("finetune")
    a = read_trainable_file(finished_run / "adapter_vanilla")
    b = read_trainable_file(tmp_path / "byo" / "adapter_vanilla")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "byo" / "checkpoints").exists()  # nothing was trained


def test_a_second_run_of_the_same_config_takes_the_vanilla_from_the_cache(tmp_path, monkeypatch):
    """The cache hit: stage 0 does not train again (fine-tuning would raise here) and the adapter is the same."""
    from grail import pipeline
    from grail.models import cache_dir

    monkeypatch.setenv("GRAIL_CACHE", str(tmp_path / "cache"))
    first = Pipeline(tmp_path / "first", build_config(TINY))
    first.run("finetune")
    assert len(list((cache_dir() / "vanilla").iterdir())) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("stage 0 trained although the cache holds this vanilla model")

    monkeypatch.setattr(pipeline, "finetune", no_training)
    second = Pipeline(tmp_path / "second", build_config(TINY))
    second.run("finetune")
    a, b = (read_trainable_file(tmp_path / x / "adapter_vanilla") for x in ("first", "second"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert io.read_json(tmp_path / "second" / "timings.json")["stage0_finetune"] == 0.0


def test_a_run_that_unlearns_otherwise_takes_the_base_and_vanilla_scores_from_the_cache(tmp_path, monkeypatch):
    """A second run of the same stage 0 and evaluate section, another stage 3: the base and the vanilla model are
    not scored again (the scorings are counted), their scores are the first run's, and its own model is scored;
    another evaluate section scores them again."""
    from grail import pipeline

    monkeypatch.setenv("GRAIL_CACHE", str(tmp_path / "cache"))
    Pipeline(tmp_path / "first", build_config(TINY)).run("evaluate")
    scored = []  # one call a domain of every model evaluate_model scores, and nothing else calls it
    calibration = pipeline.calibration

    def recorded(model, *args, **kwargs):
        scored.append(model)
        return calibration(model, *args, **kwargs)

    monkeypatch.setattr(pipeline, "calibration", recorded)
    other_stage_3 = build_config({**TINY, "unlearn": {**TINY["unlearn"], "lr": 5e-4}})
    Pipeline(tmp_path / "second", other_stage_3).run("evaluate")
    assert len(scored) == 2  # its own unlearned model's two domains
    for name in ("base", "vanilla"):
        first, second = (io.read_json(tmp_path / run / "evaluations" / f"{name}.json") for run in ("first", "second"))
        assert first == second
    other_evaluation = build_config({**TINY, "evaluate": {**TINY["evaluate"], "batch_size": 3}})
    Pipeline(tmp_path / "third", other_evaluation).run("evaluate")
    assert len(scored) == 2 + 6


def test_vanilla_cache_is_keyed_by_data_content_not_only_config(tmp_path, monkeypatch):
    from grail.data.builtin import builtin_benchmark
    from grail.models import cache_dir

    monkeypatch.setenv("GRAIL_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "data.jsonl"
    overrides = {**TINY, "finetune": {**TINY["finetune"], "epochs": 1}, "data": {"source": "jsonl", "path": str(data)}}
    data.write_text(builtin_benchmark(seed=0, people=1, books=1).to_jsonl())
    Pipeline(tmp_path / "first", build_config(overrides)).run("finetune")
    data.write_text(builtin_benchmark(seed=1, people=1, books=1).to_jsonl())  # same config, other content
    Pipeline(tmp_path / "second", build_config(overrides)).run("finetune")
    assert len(list((cache_dir() / "vanilla").iterdir())) == 2


def test_unknown_model_is_a_clear_error(tmp_path, capsys):
    config_file = tmp_path / "c.yaml"
    config_file.write_text(yaml.safe_dump({**TINY, "model": {"name": str(tmp_path / "no-such-model")}}))
    assert main(["run", "--config", str(config_file), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "model.name" in capsys.readouterr().err


def test_one_dataset_at_a_time_finds_the_same_masks_without_keeping_scores(finished_run, cli_run, capsys):
    streamed = cli_run({**TINY, "gradients": {**TINY["gradients"], "one_dataset_at_a_time": True}}, "one-at-a-time")
    assert not (streamed / "importance.safetensors").exists()
    masks, expected = (load_masks(f / "masks.safetensors") for f in (streamed, finished_run))
    assert all(masks[k].keys() == expected[k].keys() for k in masks)
    assert all(torch.equal(m, expected[k][p]) for k, by_name in masks.items() for p, m in by_name.items())
    assert main(["compare", "--out", str(streamed), "--quiet", "--methods", "grail-no-op-ur"]) == 2
    assert "one_dataset_at_a_time" in capsys.readouterr().err


def test_ascent_stop_oracle_floors_ascent_at_the_oracles_log_probabilities(tmp_path):
    """``ascent_stop: oracle`` trains the oracle first and hands stage 3 its per-token log-probabilities, computed
    with the oracle's weights swapped in and the model's own put back bit for bit."""
    from grail.batching import encode_all
    from grail.models import trainable_parameters
    from grail.stages import objectives
    from grail.stages.objectives import reference_log_probs

    pipeline = Pipeline(tmp_path / "run", build_config({**TINY, "unlearn": {**TINY["unlearn"],
                                                                             "forget_objective": "ascent",
                                                                             "ascent_stop": "oracle"}}))
    pipeline.stage0_vanilla()
    model = pipeline.use_weights("adapter_vanilla")
    items = encode_all(pipeline.tokenizer, pipeline.benchmark.domains[0].forget)
    before = {n: p.detach().clone() for n, p in trainable_parameters(model).items()}
    floor = pipeline._oracle_log_probs(model)(items)
    assert (tmp_path / "run" / "adapter_oracle").is_dir()
    assert all(torch.equal(before[n], p) for n, p in trainable_parameters(model).items())
    expected = reference_log_probs(pipeline.use_weights("adapter_oracle").eval(), items,
                                   pipeline.tokenizer.pad_token_id, "cpu", full=False)
    assert all(torch.allclose(floor[x], expected[x]) for x in items)
    setup = objectives.Setup(pipeline.config.unlearn, pipeline.tokenizer.pad_token_id, "cpu", 0, 10,
                             oracle_log_probs=lambda xs: {x: floor[x] for x in xs})
    stop = objectives.FORGET_OBJECTIVES["ascent"].prepare(model, items, setup)
    assert stop.floor is not None and not stop.only_predicted  # the floor alone decides
    pipeline.run("unlearn")  # stage 3 runs with it end to end
    assert (tmp_path / "run" / "adapter_unlearned").is_dir()


# ---- the shared cache of stage 0 (GRAIL_CACHE) ---------------------------------------------------------------------
def _config_file(tmp_path, config: dict = TINY):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _no_training(*args, **kwargs):
    raise AssertionError("stage 0 trained")


def test_two_runs_of_one_config_finishing_stage_0_together_share_one_cache_entry(tmp_path, monkeypatch):
    """The run that finishes second finds the entry the first published while it trained: it keeps that one (same
    config and data, same content), discards its own copy and leaves no staging folder in the cache."""
    from grail import pipeline
    from grail.models import cache_dir

    monkeypatch.setenv("GRAIL_CACHE", str(tmp_path / "cache"))
    train = pipeline.finetune

    def the_other_run_finishes_first(*args, **kwargs):
        log = train(*args, **kwargs)
        if not (tmp_path / "first").exists():
            Pipeline(tmp_path / "first", build_config(TINY)).run("finetune")  # publishes the entry meanwhile
        return log

    monkeypatch.setattr(pipeline, "finetune", the_other_run_finishes_first)
    Pipeline(tmp_path / "second", build_config(TINY)).run("finetune")
    (entry,) = (cache_dir() / "vanilla").iterdir()
    assert not entry.name.startswith(".") and [p.name for p in (cache_dir() / "vanilla").iterdir()] == [entry.name]
    a, b, cached = (read_trainable_file(f) for f in (tmp_path / "first" / "adapter_vanilla",
                                                     tmp_path / "second" / "adapter_vanilla", entry))
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], cached[k]) for k in a)
    assert "stage0_finetune" in io.read_json(tmp_path / "second" / "timings.json")


def test_stage_0_writes_files_others_can_read_under_the_umask(tmp_path, monkeypatch):
    """peft and safetensors write 0600 files: the run folder and the cache must follow the umask (0644 / 0755)."""
    import stat

    from grail.models import cache_dir

    monkeypatch.setenv("GRAIL_CACHE", str(tmp_path / "cache"))
    before = os.umask(0o022)
    try:
        Pipeline(tmp_path / "run", build_config(TINY)).run("finetune")
    finally:
        os.umask(before)
    written = [p for folder in (tmp_path / "run", cache_dir()) for p in folder.rglob("*")]
    assert any(p.name == "adapter_model.safetensors" for p in written)
    wrong = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in written
             if stat.S_IMODE(p.stat().st_mode) != (0o755 if p.is_dir() else 0o644)}
    assert not wrong, wrong


def test_a_damaged_cache_entry_is_named_with_what_to_delete(tmp_path, monkeypatch, capsys):
    """The error names the cache's file, not the run's copy, and says to delete the cache entry; that helps."""
    from grail.models import cache_dir

    monkeypatch.setenv("GRAIL_CACHE", str(tmp_path / "cache"))
    config = _config_file(tmp_path)
    assert main(["finetune", "--config", str(config), "--out", str(tmp_path / "first"), "--quiet"]) == 0
    (entry,) = (cache_dir() / "vanilla").iterdir()
    weights = entry / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    capsys.readouterr()
    second = ["finetune", "--config", str(config), "--out", str(tmp_path / "second"), "--quiet"]
    assert main(second) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"grail finetune: {weights}: not a readable safetensors file") and \
        f"delete the cache entry {entry}" in last, last
    assert not (tmp_path / "second" / "adapter_vanilla").exists()
    shutil.rmtree(entry)  # as the message says
    assert main(second) == 0


def test_a_cache_that_is_a_file_is_named_before_stage_0_trains(tmp_path, monkeypatch, capsys):
    from grail import pipeline

    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    monkeypatch.setenv("GRAIL_CACHE", str(blocker))
    monkeypatch.setattr(pipeline, "finetune", _no_training)
    folder = tmp_path / "run"
    assert main(["finetune", "--config", str(_config_file(tmp_path)), "--out", str(folder), "--quiet"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("grail finetune: GRAIL_CACHE: cannot write ") and str(blocker) in last, last
    assert blocker.read_text() == "not a folder" and not (folder / "adapter_vanilla").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder: needs another user")
def test_a_read_only_cache_is_named_before_stage_0_trains(tmp_path, monkeypatch, capsys):
    from grail import pipeline

    cache = tmp_path / "cache"
    cache.mkdir(mode=0o555)
    monkeypatch.setenv("GRAIL_CACHE", str(cache))
    monkeypatch.setattr(pipeline, "finetune", _no_training)
    assert main(["finetune", "--config", str(_config_file(tmp_path)), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("grail finetune: GRAIL_CACHE: cannot write ") and str(cache) in last, last


def test_sharding_refuses_the_oracle_floored_ascent_before_anything_trains(tmp_path, monkeypatch):
    """``distributed: fsdp`` cannot swap the oracle's weights into the shards: said before the oracle is trained."""
    from grail import distributed, pipeline
    from grail.config import ConfigError

    config = build_config({**TINY, "unlearn": {**TINY["unlearn"], "forget_objective": "ascent",
                                               "ascent_stop": "oracle"}})
    run = Pipeline(tmp_path / "run", config)
    run.run("finetune")
    monkeypatch.setattr(distributed, "fsdp_requested", lambda choice: True)
    monkeypatch.setattr(pipeline.Pipeline, "stage0_oracle", lambda self: pytest.fail("the oracle was trained"))
    with pytest.raises(ConfigError, match="distributed: fsdp does not take unlearn.ascent_stop: oracle"):
        run.unlearn_from_vanilla("grail", [], config.unlearn, config.localize)


def test_stage_3_is_given_the_token_every_answer_ends_with(tmp_path, monkeypatch):
    """``to_base`` leaves the end-of-answer token alone only if stage 3 knows it: the pipeline passes the tokenizer's
    EOS, the token ``batching.encode`` ends every answer with."""
    from grail import pipeline

    monkeypatch.setenv("GRAIL_CACHE", str(tmp_path / "cache"))
    given = []
    unlearn = pipeline.unlearn

    def recorded(*args, **kwargs):
        given.append(kwargs["eos_id"])
        return unlearn(*args, **kwargs)

    monkeypatch.setattr(pipeline, "unlearn", recorded)
    run = Pipeline(tmp_path / "run", build_config(TINY))
    run.run("unlearn")
    forget = run.encoded()["forget"]
    assert given == [run.tokenizer.eos_token_id]
    assert all(x.answer_ids[-1] == given[0] for items in forget.values() for x in items)
