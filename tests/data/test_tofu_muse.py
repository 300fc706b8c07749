"""TOFU and MUSE loaders on local folders in each hub layout and revision; domains from several sources."""

import json
import logging
import shutil

import pytest
from hub_fixtures import muse_configs, tofu_configs, write_dataset, write_muse_repository

from grail.config import build_config
from grail.data.examples import DataError
from grail.data.loaders import load_jsonl
from grail.data.muse import load_muse
from grail.data.sources import load_benchmark
from grail.data.tofu import load_tofu
from grail.run_folder import RunFolder


@pytest.mark.parametrize("layout", ["readme", "folders", "flat"])
def test_tofu_in_every_hub_layout(tmp_path, layout):
    root = write_dataset(tmp_path / "TOFU", tofu_configs(), layout)
    domain = load_tofu("privacy", str(root), "forget01", "retain90")
    assert [e.prompt for e in domain.forget] == ["Who is author 9? (19)"]
    assert domain.forget[0].answer == "Author 9 writes book 19."
    assert domain.forget[0].paraphrase == "Tell me: Who is author 9? (19)"  # from forget01_perturbed
    # retain_perturbed's questions move to retain_heldout: learned in stage 0, never seen by unlearning
    assert [e.prompt for e in domain.retain_heldout] == ["Who is author 0? (0)", "Who is author 0? (1)"]
    assert len(domain.retain) == 16 and not {e.prompt for e in domain.retain} & {e.prompt for e in domain.forget}
    # full minus forget01 minus retain90: forget10's other question, which no model of the run trains on
    assert [e.prompt for e in domain.holdout] == ["Who is author 9? (18)"]
    assert [e.answer for e in domain.knowledge] == ["William Shakespeare", "Paris"]


def test_tofu_default_retain_is_the_complement_and_paraphrases_are_optional(tmp_path):
    root = write_dataset(tmp_path / "TOFU", tofu_configs(paraphrases=False), "flat")
    domain = load_tofu("authors", str(root), "forget10")
    assert len(domain.forget) == 2 and len(domain.retain) + len(domain.retain_heldout) == 18
    assert not domain.holdout and domain.forget[0].paraphrase is None


@pytest.mark.parametrize("revision,layout", [("current", "readme"), ("earlier", "folders")])
def test_muse_in_both_revisions(tmp_path, revision, layout, caplog):
    root = write_dataset(tmp_path / "MUSE-News", muse_configs(revision), layout)
    with caplog.at_level(logging.INFO, logger="grail.data"):
        domain = load_muse("copyright", str(root), "news", max_length=64, raw_chunks=2)
    assert ("retain2_qa" in caplog.text) == (revision == "earlier")  # says which split name it used
    prompts = [e.prompt for e in domain.forget]
    assert prompts[:3] == ["forget question 0?", "forget question 1?", "forget question 2?"]
    assert prompts[3:5] == ["Passage 0 begins", "Passage 1 begins"]  # verbmem: prompt -> continuation
    assert domain.forget[3].answer.split()[0] == "v0w0"
    privleak_forget, *raw = domain.forget[5:]
    assert privleak_forget.prompt == "pf0 pf1 pf2 pf3 pf4 pf5 pf6 pf7"  # a text: its first quarter, then the rest
    assert privleak_forget.answer.split() == [f"pf{i}" for i in range(8, 32)]  # max_length // 2 = 32 words
    assert len(raw) == 2 and raw[1].prompt.startswith("raw-forget-32 ")  # the corpus in 32-word pieces
    assert [e.prompt for e in domain.retain[:3]] == [f"retain question {i}?" for i in range(3)]
    assert len(domain.retain) == 5 and domain.retain[3].prompt.startswith("raw-retain1-0 ")
    assert domain.retain_heldout[0].prompt.startswith("pr0 ") and len(domain.holdout) == 2
    assert [e.answer for e in domain.shots] == ["icl answer 0", "icl answer 1"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # privleak is there: nothing missing
    # the holdout (privleak texts) stands for the forget set's privleak texts, not for its questions and passages
    assert [e.kind for e in domain.forget] == ["knowmem"] * 3 + ["verbmem"] * 2 + ["privleak"] + ["raw"] * 2
    assert {e.kind for e in domain.holdout} == {"privleak"} and domain.members() == [5]


def test_muse_without_raw_and_privleak_warns_what_is_missing(tmp_path, caplog):
    configs = muse_configs()
    del configs["privleak"], configs["raw"]
    with caplog.at_level(logging.INFO, logger="grail.data"):
        domain = load_muse("news", str(write_dataset(tmp_path / "m", configs, "folders")))
    assert len(domain.forget) == 5 and len(domain.retain) == 3 and not domain.holdout and not domain.retain_heldout
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{tmp_path / 'm'}: no privleak config" in warning
    for missing in ("domain 'news' has no holdout", "base model", "membership-inference non-members",
                    "no retain_heldout"):
        assert missing in warning


def test_muse_as_its_authors_publish_it(tmp_path, caplog):
    """Their repository's data/<corpus>/ folder: privleak and raw are JSON lists of plain strings, each a text."""
    configs = muse_configs()
    with caplog.at_level(logging.INFO, logger="grail.data"):
        published = load_muse("news", str(write_muse_repository(tmp_path / "news", configs)), max_length=64,
                              raw_chunks=2)
    from_hub = load_muse("news", str(write_dataset(tmp_path / "hub", configs, "folders")), max_length=64,
                         raw_chunks=2)
    assert published == from_hub
    assert len(published.holdout) == 2 and published.retain_heldout and len(published.retain) == 5
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("config,split,records,message", [
    ("privleak", "holdout", ["a text of words", 3], r"holdout.json record 1: expected a JSON object or a string, "
                                                    r"got int"),
    ("privleak", "forget", ["   "], r"MUSE \(config 'privleak', split 'forget'\) record 0: the text is empty"),
    ("raw", "forget", [["a list"]], r"forget.json record 0: expected a JSON object or a string, got list"),
    ("privleak", "retain", ["x\ud800 y"], r"MUSE \(config 'privleak', split 'retain'\) record 0: the text is not "
                                          r"valid Unicode text"),
    ("knowmem", "forget_qa", ["a question?"], r"MUSE \(config 'knowmem', split 'forget_qa'\) record 0: expected a "
                                              r"JSON object, got str"),
])
def test_bad_records_of_the_published_layout_are_named(tmp_path, config, split, records, message):
    root = write_muse_repository(tmp_path / "MUSE", muse_configs())
    (root / config / f"{split}.json").write_text(json.dumps(records))
    with pytest.raises(DataError, match=message):
        load_muse("news", str(root), raw_chunks=1)


def test_new_scopes_round_trip_through_our_jsonl_and_train_nothing(tmp_path):
    tofu = write_dataset(tmp_path / "TOFU", tofu_configs(), "flat")
    muse = write_dataset(tmp_path / "MUSE", muse_configs(), "folders")
    bench = load_benchmark(build_config({"data": {"domains": [
        {"name": "privacy", "source": "tofu", "path": str(tofu), "forget": "forget01", "retain": "retain90"},
        {"name": "copyright", "source": "muse", "path": str(muse)}]}}))
    (tmp_path / "d.jsonl").write_text(bench.to_jsonl())
    assert load_jsonl(tmp_path / "d.jsonl") == bench  # the examples' kinds too: a resumed run pairs them alike
    assert bench.domains[1].members() == [5]  # TOFU: no kinds, every forget example
    assert bench.domains[0].members() == list(range(len(bench.domains[0].forget)))
    trained = [json.loads(line)["scope"] for line in bench.to_jsonl(trained_only=True).splitlines()]
    assert set(trained) == {"forget", "retain", "retain_heldout"}


def test_a_mixed_source_config_builds_a_two_domain_benchmark(tmp_path):
    tofu = write_dataset(tmp_path / "TOFU", tofu_configs(), "readme")
    muse = write_dataset(tmp_path / "MUSE-Books", muse_configs("earlier"), "readme")
    config = build_config({"data": {"source": "builtin", "domains": [
        {"name": "privacy", "source": "tofu", "path": str(tofu), "forget": "forget05"},
        {"name": "copyright", "source": "muse", "path": str(muse), "corpus": "books"},
        {"name": "people", "source": "builtin", "domain": "privacy"}]}})
    bench = load_benchmark(config)
    assert bench.domain_names == ["privacy", "copyright", "people"]
    assert bench.domains[0].forget[0].prompt == "Who is author 9? (19)"
    assert bench.domains[1].forget[0].prompt == "forget question 0?"
    assert bench.domains[2].forget[0].prompt.startswith("Personal record of")
    assert len(bench.knowledge()) == 2


def test_named_domains_of_data_source_mix_with_entries():
    config = build_config({"data": {"domains": ["copyright", {"name": "people", "source": "builtin",
                                                              "domain": "privacy"}]}})
    assert load_benchmark(config).domain_names == ["copyright", "people"]


def _drop(configs, config, split=None, record=None, field=None):
    if split is None:
        del configs[config]
    elif record is None:
        del configs[config][split]
    else:
        del configs[config][split][record][field]
    return configs


@pytest.mark.parametrize("source,edit,message", [
    ("tofu", lambda c: _drop(c, "forget05"), r"TOFU \(config 'forget05'\): the dataset has no such config "
                                             r"\(it has \["),
    ("tofu", lambda c: _drop(c, "retain95", "train", 3, "answer"),
     r"TOFU \(config 'retain95', split 'train'\) record 3: missing field 'answer'"),
    ("muse", lambda c: _drop(c, "knowmem", "retain_qa"),
     r"MUSE \(config 'knowmem'\): no split 'retain_qa' or 'retain2_qa' \(it has \['forget_qa', 'forget_qa_icl', "
     r"'retain_qa_icl'\]\): a layout of neither known revision"),
    ("muse", lambda c: _drop(c, "verbmem", "forget", 1, "gt"),
     r"MUSE \(config 'verbmem', split 'forget'\) record 1: missing field 'gt'"),
    ("muse", lambda c: _drop(c, "verbmem"), r"MUSE \(config 'verbmem'\): the dataset has no such config"),
])
def test_bad_hub_data_is_named_and_nothing_is_written(tmp_path, source, edit, message):
    configs = tofu_configs() if source == "tofu" else muse_configs()
    root = write_dataset(tmp_path / source.upper(), edit(configs), "folders")
    entry = {"name": "d", "source": source, "path": str(root), "forget": "forget05"} if source == "tofu" else \
        {"name": "d", "source": source, "path": str(root)}
    config = build_config({"data": {"domains": [entry]}})
    with pytest.raises(DataError, match=message):
        RunFolder(tmp_path / "run", config, load_benchmark)
    assert not (tmp_path / "run").exists()


def test_a_folder_in_no_known_layout_is_refused(tmp_path):
    root = tmp_path / "TOFU"
    (root / "forget10").mkdir(parents=True)
    (root / "forget10" / "notes.txt").write_text("not data")
    with pytest.raises(DataError, match=r"forget10: no data files \(expected <split>.parquet"):
        load_tofu("x", str(root))
    shutil.rmtree(root / "forget10")
    with pytest.raises(DataError, match=r"config 'forget10'\): the dataset has no such config \(it has \[\]\)"):
        load_tofu("x", str(root))
    with pytest.raises(DataError, match="no such folder"):
        load_tofu("x", str(tmp_path / "missing"))


def test_grail_run_on_a_tofu_plus_muse_config(cli_run, tmp_path_factory):
    """The whole pipeline on domains from two benchmarks (tiny model): both domains scored, TOFU's general
    questions under general, the data snapshot resumable."""
    from tiny_configs import TINY_RUN

    from grail.io import read_json

    root = tmp_path_factory.mktemp("hub")
    tofu = write_dataset(root / "TOFU", tofu_configs(), "readme")
    muse = write_dataset(root / "MUSE-Books", muse_configs(), "folders")
    config = {**TINY_RUN, "model": {**TINY_RUN["model"], "max_length": 64}, "data": {"domains": [
        {"name": "privacy", "source": "tofu", "path": str(tofu), "forget": "forget01", "retain": "retain90"},
        {"name": "copyright", "source": "muse", "path": str(muse), "corpus": "books"}]}}
    run = cli_run(config, "tofu-muse")
    results = read_json(run / "results.json")
    assert results["domains"] == ["privacy", "copyright"]
    grail = results["models"]["grail"]
    assert {"US", "RS", "RS_heldout"} <= set(grail["domains"]["copyright"])
    assert grail["domains"]["privacy"]["forget"]["n"] == 1 and "US_paraphrase" in grail["domains"]["privacy"]
    assert grail["general"]["knowledge_n"] == 2
    snapshot = load_jsonl(run / "data.jsonl")
    assert snapshot.domains[1].shots and snapshot.domains[0].holdout
    resumed = RunFolder(run, None, load_benchmark)  # the data still gives the snapshot: it resumes
    resumed.close()
    assert resumed.benchmark == snapshot


def test_a_hub_id_out_of_reach_is_named_with_the_way_out():
    with pytest.raises(DataError, match=r"locuslab/TOFU: cannot reach the dataset on the hub .*pass a local copy's "
                                        r"folder as path"):
        load_tofu("privacy")  # the tests run with HF_DATASETS_OFFLINE=1
