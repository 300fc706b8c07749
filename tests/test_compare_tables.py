"""The utility table, Table V's utility columns and the ranking within the PPL budget, on hand-made scores."""

import csv

from grail import io
from grail.compare import ranking, success_rows, table_rows, utility_rows, write_comparison


def _model(us, rs, hs, general, heldout=None, paraphrase=None):
    """One model's scores in evaluate()'s shape: one domain, whose values are also the averages."""
    extra = {k: v for k, v in (("RS_heldout", heldout), ("US_paraphrase", paraphrase)) if v is not None}
    domain = {"US": us, "RS": rs, "HS": hs, "forget": {"ppl": 30.0, "rouge_l": 0.2},
              "retain": {"ppl": 3.0, "rouge_l": 0.8}, **extra}
    average = {"US": us, "RS": rs, "HS": hs, "success": (us + rs) / 2, **extra}
    return {"domains": {"privacy": domain}, "average": average, "general": general}


def _general(ppl, probe, mmlu=None, logprob=None):
    return {"probe_accuracy": probe, "general_text_ppl": ppl, "probe_n": 10,
            **({"mmlu_accuracy": mmlu, "mmlu_logprob": logprob, "mmlu_n": 100} if mmlu is not None else {})}


SCORES = {
    "vanilla": _model(10.0, 95.0, 18.0, _general(10.0, 80.0, 50.0, -1.5), heldout=90.0, paraphrase=8.0),
    "base": {"general": _general(8.0, 85.0, 55.0, -1.2)},  # before fine-tuning: general scores only
    "grail": _model(90.0, 85.0, 87.0, _general(11.0, 75.0, 48.0, -1.6), heldout=80.0, paraphrase=70.0),
    "ga": _model(100.0, 60.0, 75.0, _general("inf", 0.0, 25.0, -9.0), heldout=50.0, paraphrase=100.0),  # collapsed
    "npo": _model(80.0, 80.0, 80.0, None),  # general scoring off
    "npo_kl": _model(85.0, 95.0, 90.0, _general(12.5, 70.0)),  # exactly at the budget; no MMLU
    "wide": _model(99.0, 92.0, 95.0, _general(13.0, 60.0)),  # the best HS, but over the budget
}


def test_utility_rows_put_base_and_vanilla_first_and_mark_missing_values():
    header, rows = utility_rows(SCORES)
    assert header == ["model", "avg. US", "avg. US_paraphrase", "avg. RS", "avg. RS_heldout", "avg. HS",
                      "general PPL", "PPL ratio to vanilla", "probe %", "MMLU acc %", "MMLU log-prob", "within budget"]
    assert rows == [
        ["base", None, None, None, None, None, 8.0, 0.8, 85.0, 55.0, -1.2, "yes"],
        ["vanilla", 10.0, 8.0, 95.0, 90.0, 18.0, 10.0, 1.0, 80.0, 50.0, -1.5, "yes"],
        ["grail", 90.0, 70.0, 85.0, 80.0, 87.0, 11.0, 1.1, 75.0, 48.0, -1.6, "yes"],
        ["ga", 100.0, 100.0, 60.0, 50.0, 75.0, "inf", "inf", 0.0, 25.0, -9.0, "no"],
        ["npo", 80.0, None, 80.0, None, 80.0, None, None, None, None, None, None],
        ["npo_kl", 85.0, None, 95.0, None, 90.0, 12.5, 1.25, 70.0, None, None, "yes"],
        ["wide", 99.0, None, 92.0, None, 95.0, 13.0, 1.3, 60.0, None, None, "no"],
    ]
    assert [row[-1] for row in utility_rows(SCORES, budget=1.3)[1]] == ["yes", "yes", "yes", "no", None, "yes", "yes"]


def test_ranking_keeps_to_the_budget_and_sorts_by_hs():
    assert ranking(SCORES) == {"ranking_within_budget": ["npo_kl", "grail"], "outside_budget": ["wide", "ga"],
                               "budget_unknown": ["npo"]}
    assert ranking(SCORES, budget=2.0)["ranking_within_budget"] == ["wide", "npo_kl", "grail"]


def test_domain_tables_skip_entries_without_domains():
    _, rows_1, header_5, rows_5 = table_rows(SCORES)
    names = ["vanilla", "grail", "ga", "npo", "npo_kl", "wide"]
    assert [row[0] for row in rows_1] == names and [row[0] for row in rows_5] == names
    assert header_5 == ["method", "privacy HS", "avg. HS", "avg. RS_heldout", "avg. US_paraphrase", "general PPL",
                        "probe %", "MMLU %"]
    assert rows_5[2] == ["ga", 75.0, 75.0, 50.0, 100.0, "inf", 0.0, 25.0]
    assert rows_5[3] == ["npo", 80.0, 80.0, None, None, None, None, None]
    assert [row[0] for row in success_rows(SCORES, ["base", "grail"])[1]] == ["vanilla", "grail"]


def test_write_comparison_writes_the_utility_table_and_the_ranking(tmp_path):
    document = write_comparison(tmp_path, SCORES)
    assert io.read_json(tmp_path / "comparison.json") == document
    assert document["budget"] == 1.25 and document["ranking_within_budget"] == ["npo_kl", "grail"]
    assert document["table_utility"]["rows"] == utility_rows(SCORES)[1]
    text = (tmp_path / "table_utility.md").read_text()
    assert "| npo | 80.00 | - | 80.00 | - | 80.00 | - | - | - | - | - | - |" in text
    assert "| ga | 100.00 | 100.00 | 60.00 | 50.00 | 75.00 | inf | inf | 0.00 | 25.00 | -9.000 | no |" in text
    with open(tmp_path / "table_utility.csv", newline="") as f:
        table = list(csv.reader(f))
    assert table[1] == ["base", "", "", "", "", "", "8.0", "0.8", "85.0", "55.0", "-1.2", "yes"]
    assert table[5] == ["npo", "80.0", "", "80.0", "", "80.0", "", "", "", "", "", ""]
    ranked = (tmp_path / "ranking.md").read_text()
    assert "| 1 | npo_kl | 90.00 | 1.250 |\n| 2 | grail | 87.00 | 1.100 |\n" in ranked
    assert "| - | wide | 95.00 | 1.300 |\n| - | ga | 75.00 | inf |\n" in ranked
    assert "No general-text perplexity to check: npo\n" in ranked
    assert "| base |" not in (tmp_path / "table5_hs.md").read_text()


def test_tables_of_only_reference_models_are_not_written(tmp_path):
    document = write_comparison(tmp_path, {n: SCORES[n] for n in ("base", "vanilla")})
    assert "table_utility" not in document and "table5_hs" not in document
    assert not (tmp_path / "ranking.md").exists()
