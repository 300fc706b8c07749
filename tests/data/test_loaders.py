import json

import pytest

from grail.data.builtin import builtin_benchmark
from grail.data.examples import DataError
from grail.data.loaders import load_jsonl, load_knowundo_dir, load_knowundo_hub


def _write_jsonl(path, records):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


GOOD = [
    {"domain": "med", "scope": "forget", "prompt": "p1", "answer": "a1", "span": "a1"},
    {"domain": "med", "scope": "retain", "prompt": "p2", "answer": "a2"},
    {"domain": "law", "scope": "forget", "prompt": "p3", "answer": "a3"},
    {"domain": "law", "scope": "retain", "prompt": "p4", "answer": "a4"},
    {"domain": "news", "scope": "forget", "prompt": "p5", "answer": "a5"},
    {"domain": "news", "scope": "retain", "prompt": "p6", "answer": "a6"},
]


def test_jsonl_takes_any_number_of_domains(tmp_path):
    bench = load_jsonl(_write_jsonl(tmp_path / "d.jsonl", GOOD))
    assert bench.domain_names == ["med", "law", "news"]
    assert bench.domains[0].forget[0].span == "a1" and bench.domains[0].retain[0].span is None
    assert bench.select(["news"]).domain_names == ["news"]


def test_jsonl_round_trips_the_builtin_benchmark(tmp_path):
    bench = builtin_benchmark(seed=1, people=2, books=1)
    path = tmp_path / "b.jsonl"
    path.write_text(bench.to_jsonl())
    assert load_jsonl(path) == bench


@pytest.mark.parametrize("bad,message", [
    ('{"domain": "med", "scope": "forget", "prompt": "p", "answer": ', "line 2: invalid JSON"),
    ({"domain": "med", "scope": "forget", "prompt": "p"}, "line 2: missing field 'answer'"),
    ({"domain": "med", "scope": "forget", "prompt": "  ", "answer": "a"}, "line 2: field 'prompt' is empty"),
    ({"domain": "med", "scope": "forgot", "prompt": "p", "answer": "a"}, "line 2: field 'scope' must be one of"),
    ({"domain": "med", "scope": "forget", "prompt": 3, "answer": "a"}, "line 2: field 'prompt' must be a string"),
    ('["not", "an", "object"]', "line 2: expected a JSON object"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, bad, message):
    path = _write_jsonl(tmp_path / "bad.jsonl", [GOOD[0], bad, *GOOD[1:]])
    with pytest.raises(DataError, match=message) as err:
        load_jsonl(path)
    assert str(path) in str(err.value)


def test_jsonl_empty_scope_and_unknown_domain(tmp_path):
    path = _write_jsonl(tmp_path / "half.jsonl", GOOD[:3])  # law has no retain set
    with pytest.raises(DataError, match="domain 'law' has an empty retain set"):
        load_jsonl(path)
    bench = load_jsonl(_write_jsonl(tmp_path / "ok.jsonl", GOOD))
    with pytest.raises(DataError, match=r"unknown domain\(s\) \['privacy'\]"):
        bench.select(["privacy"])


def _knowundo(root, domain, files):
    (root / domain).mkdir(parents=True)
    for name, records in files.items():
        (root / domain / name).write_text(records if isinstance(records, str) else json.dumps(records))


def _records(n, tag):
    return [{"text": f"{tag} question {i}", "labels": f"{tag} answer {i}"} for i in range(n)]


KNOWUNDO_FILES = ("unlearn_train.json", "unlearn_val.json", "retention_train.json", "retention_val.json")


def test_knowundo_folder(tmp_path):
    for domain in ("privacy", "copyright"):
        _knowundo(tmp_path, domain, {f: _records(3, f"{domain}-{f}") for f in KNOWUNDO_FILES})
    bench = load_knowundo_dir(tmp_path, ["privacy", "copyright"])
    assert bench.domains[0].forget[0].prompt == "privacy-unlearn_train.json question 0"
    assert bench.domains[1].retain[2].answer == "copyright-retention_train.json answer 2"
    val = load_knowundo_dir(tmp_path, ["copyright"], split="val")
    assert val.domains[0].forget[0].prompt.startswith("copyright-unlearn_val.json")


def test_knowundo_errors(tmp_path):
    files = {f: _records(2, f) for f in KNOWUNDO_FILES}
    files["retention_train.json"] = [{"text": "q", "labels": "a"}, {"text": "q2"}]
    _knowundo(tmp_path, "privacy", files)
    with pytest.raises(DataError, match=r"retention_train.json record 1: missing field 'labels'"):
        load_knowundo_dir(tmp_path, ["privacy"])
    with pytest.raises(DataError, match="unknown domain 'medical'"):
        load_knowundo_dir(tmp_path, ["medical"])
    (tmp_path / "privacy" / "retention_train.json").write_text("[{")
    with pytest.raises(DataError, match="retention_train.json: invalid JSON"):
        load_knowundo_dir(tmp_path, ["privacy"])


def test_knowundo_empty_forget_set(tmp_path):
    files = {f: _records(2, f) for f in KNOWUNDO_FILES}
    files["unlearn_train.json"] = []
    _knowundo(tmp_path, "privacy", files)
    with pytest.raises(DataError, match="domain 'privacy' has an empty forget set"):
        load_knowundo_dir(tmp_path, ["privacy"])


def test_knowundo_hub_layout_from_a_local_dataset_folder(tmp_path):
    """The hub loader's code path (datasets.load_dataset with config + split), on a local copy of the layout."""
    header = ["---", "configs:"]
    for domain in ("privacy", "copyright"):
        header += [f"- config_name: {domain}", "  data_files:"]
        for split in ("unlearn", "retention"):
            row = {"train": _records(2, f"{domain}-{split}-train"), "val": _records(1, f"{domain}-{split}-val")}
            (tmp_path / domain).mkdir(exist_ok=True)
            (tmp_path / domain / f"{split}.json").write_text(json.dumps(row) + "\n")
            header += [f"  - split: {split}", f"    path: {domain}/{split}.json"]
    (tmp_path / "README.md").write_text("\n".join(header + ["---", ""]))
    bench = load_knowundo_hub(["privacy", "copyright"], "train", str(tmp_path))
    assert bench.domains[0].forget[1].answer == "privacy-unlearn-train answer 1"
    assert bench.domains[1].retain[0].prompt == "copyright-retention-train question 0"
    val = load_knowundo_hub(["copyright"], "val", str(tmp_path))
    assert len(val.domains[0].forget) == 1


def test_jsonl_takes_heldout_retain_facts_and_paraphrases(tmp_path):
    records = [{**GOOD[0], "paraphrase": "p1 in other words"}, *GOOD[1:],
               {"domain": "med", "scope": "retain_heldout", "prompt": "p7", "answer": "a7"}]
    bench = load_jsonl(_write_jsonl(tmp_path / "d.jsonl", records))
    med = bench.domains[0]
    assert med.forget[0].paraphrase == "p1 in other words" and med.retain_heldout[0].answer == "a7"
    assert [(e.prompt, e.answer) for e in med.forget_paraphrases()] == [("p1 in other words", "a1")]
    assert set(med.measured_sets()) == {"forget", "retain", "retain_heldout", "forget_paraphrase"}
    assert set(bench.domains[1].measured_sets()) == {"forget", "retain"}  # both are optional
    assert load_jsonl(_write_jsonl(tmp_path / "again.jsonl", bench.to_jsonl().splitlines())) == bench


@pytest.mark.parametrize("bad,message", [
    ({**GOOD[0], "paraphrase": ""}, "line 2: field 'paraphrase' must be a non-empty string"),
    ({**GOOD[0], "paraphrase": 7}, "line 2: field 'paraphrase' must be a non-empty string"),
    ({**GOOD[1], "paraphrase": "q"}, "line 2: field 'paraphrase' is only for forget records"),
    ({**GOOD[0], "paraphrase": " p1 "}, "line 2: field 'paraphrase' repeats the prompt"),
    ({"domain": "med", "scope": "heldout", "prompt": "p", "answer": "a"}, "line 2: field 'scope' must be one of"),
    ({"domain": "med", "scope": "retain_heldout", "prompt": "p"}, "line 2: missing field 'answer'"),
])
def test_jsonl_rejects_bad_optional_fields_by_name(tmp_path, bad, message):
    with pytest.raises(DataError, match=message):
        load_jsonl(_write_jsonl(tmp_path / "bad.jsonl", [GOOD[0], bad, *GOOD[1:]]))


def test_knowundo_train_split_takes_the_val_retention_as_heldout(tmp_path):
    folder = tmp_path / "privacy"
    folder.mkdir()
    for name, prompt in [("unlearn_train", "u"), ("retention_train", "r"), ("retention_val", "v")]:
        (folder / f"{name}.json").write_text(json.dumps([{"text": prompt, "labels": prompt.upper()}]))
    bench = load_knowundo_dir(tmp_path, ["privacy"])
    assert [e.prompt for e in bench.domains[0].retain_heldout] == ["v"]
    (folder / "retention_val.json").write_text('[{"text": "v"}]')
    with pytest.raises(DataError, match=r"retention_val.json record 0: missing field 'labels'"):
        load_knowundo_dir(tmp_path, ["privacy"])


def test_jsonl_and_knowundo_take_a_holdout(tmp_path):
    records = [*GOOD, {"domain": "med", "scope": "holdout", "prompt": "p9", "answer": "a9"}]
    bench = load_jsonl(_write_jsonl(tmp_path / "d.jsonl", records))
    assert [e.prompt for e in bench.domains[0].holdout] == ["p9"] and not bench.domains[1].holdout
    assert "holdout" not in bench.domains[0].measured_sets()  # no model is scored or trained on it
    assert load_jsonl(_write_jsonl(tmp_path / "again.jsonl", bench.to_jsonl().splitlines())) == bench
    assert '"holdout"' not in bench.to_jsonl(trained_only=True)
    with pytest.raises(DataError, match="line 2: field 'paraphrase' is only for forget records"):
        load_jsonl(_write_jsonl(tmp_path / "bad.jsonl", [GOOD[0], {**records[-1], "paraphrase": "q"}, *GOOD[1:]]))
    folder = tmp_path / "knowundo" / "privacy"
    folder.mkdir(parents=True)
    for name, prompt in [("unlearn_train", "u"), ("retention_train", "r"), ("unlearn_val", "h")]:
        (folder / f"{name}.json").write_text(json.dumps([{"text": prompt, "labels": prompt.upper()}]))
    assert [e.prompt for e in load_knowundo_dir(folder.parent, ["privacy"]).domains[0].holdout] == ["h"]
    (folder / "retention_val.json").write_text(json.dumps([{"text": "v", "labels": "V"}]))
    val = load_knowundo_dir(folder.parent, ["privacy"], "val").domains[0]
    assert [e.prompt for e in val.forget] == ["h"] and not val.holdout  # the val split's forget set is unlearn_val


@pytest.mark.parametrize("field", ["domain", "prompt", "answer", "span", "paraphrase"])
def test_a_lone_surrogate_is_refused_with_file_line_and_field(tmp_path, field):
    """A lone surrogate's JSON escape is valid JSON but no Unicode text: the run's data.jsonl could not hold it."""
    bad = {**GOOD[0], "paraphrase": "p1 in other words", field: "x\ud800"}
    path = _write_jsonl(tmp_path / "bad.jsonl", [GOOD[0], bad, *GOOD[1:]])
    with pytest.raises(DataError) as err:
        load_jsonl(path)
    assert str(err.value) == (f"{path} line 2: field {field!r} is not valid Unicode text (character 2 is a lone "
                              "surrogate '\\ud800')")


def test_a_lone_surrogate_in_a_knowundo_file_is_refused(tmp_path):
    files = {f: _records(2, f) for f in KNOWUNDO_FILES}
    files["unlearn_train.json"] = [{"text": "q", "labels": "\udfff a"}]
    _knowundo(tmp_path, "privacy", files)
    with pytest.raises(DataError, match=r"unlearn_train.json record 0: field 'labels' is not valid Unicode text"):
        load_knowundo_dir(tmp_path, ["privacy"])


def test_the_holdout_hint_names_every_source_grail_reads():
    """What ``grail attack`` and calibration say when a domain has no holdout: where each source keeps one."""
    from grail.data.examples import HOLDOUT_SOURCES

    for where in ("JSONL", "scope 'holdout'", "KnowUnDo", "unlearn_val", "TOFU", "forget10's other authors",
                  "'full'", "MUSE", "privleak/holdout", "built-in benchmark"):
        assert where in HOLDOUT_SOURCES


def test_a_source_without_an_optional_part_says_once_what_is_then_unavailable(tmp_path, caplog):
    """JSONL records without holdout or paraphrases: one warning per domain naming each missing part and its loss;
    the built-in benchmark has every part and says nothing."""
    import logging

    from grail.config import build_config
    from grail.data.builtin import builtin_benchmark
    from grail.data.sources import load_benchmark

    data = tmp_path / "d.jsonl"
    records = [r for r in map(json.loads, builtin_benchmark(seed=0, people=1, books=1).to_jsonl().splitlines())
               if r["scope"] != "holdout"]
    data.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "paraphrase"}) + "\n" for r in records))
    with caplog.at_level(logging.WARNING, logger="grail.data"):
        load_benchmark(build_config({"data": {"source": "jsonl", "path": str(data)}}))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # one per domain
    assert all("has no holdout, no paraphrases:" in w and "membership-inference" in w and "US_paraphrase" in w
               for w in warnings)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="grail.data"):
        load_benchmark(build_config({}))
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
