"""The report's tables: every cell read from the right field of results.json."""

from grail.report import heldout_produced_rate, results_table


def _domain(heldout_span_rate: float | None) -> dict:
    scores = {"forget": {"ppl": 9.0, "rouge_l": 1.0}, "retain": {"ppl": 1.5, "rouge_l": 90.0},
              "US": 91.0, "RS": 98.0, "HS": 94.3, "RS_heldout": 77.0, "US_paraphrase": 80.0,
              "leak_rate": 0.0, "retain_produced_rate": 95.0}
    if heldout_span_rate is not None:
        scores["retain_heldout"] = {"accuracy": 77.0, "span_rate": heldout_span_rate}
    return scores


def test_heldout_produced_rate_is_the_held_out_sets_span_rate_beside_its_token_accuracy():
    document = {"models": {"grail": {"domains": {"privacy": _domain(20.0), "copyright": _domain(None)}}}}
    header, _, privacy, copyright = results_table(document).splitlines()
    column = header.split(" | ").index("held-out produced % ↑")
    assert privacy.split(" | ")[column] == "20.00"
    assert privacy.split(" | ")[header.split(" | ").index("RS held-out ↑")] == "77.00"
    assert copyright.split(" | ")[column] == "-"  # no held-out set measured with generation
    assert heldout_produced_rate(_domain(None)) is None
