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


def _measured(auc: float, met: bool) -> dict:
    return {"reference": "holdout", "US": 70.0, "US_reference": 71.0, "US_vanilla": 60.0, "US_base": 75.0,
            "gap": -1.0, "auc": auc, "auc_vanilla": 0.3, "auc_base": 0.7, "met": met}


def test_each_domain_says_why_stage_3_stopped_ascending_it():
    """From the per-epoch log: met within an epoch (the step and the measurement then), met at an epoch's end, out
    of tokens to ascend, or not met when the stage stopped (the stage's reason)."""
    from grail.report import domain_stops

    history = [
        {"ascending": ["a", "b", "c", "d"], "target_reached_at_step": {"a": 4},
         "target_reached": {"a": _measured(0.45, True)},
         "target": {"a": _measured(0.5, True), "b": _measured(0.9, False), "c": _measured(0.8, False),
                    "d": _measured(0.9, False)}, "left_to_ascend": {"a": 10.0, "b": 10.0, "c": 0.0, "d": 5.0}},
        {"ascending": ["b", "d"], "target": {"a": _measured(0.5, True), "b": _measured(0.4, True),
                                             "c": _measured(0.8, False), "d": _measured(0.9, False)},
         "left_to_ascend": {"a": 10.0, "b": 10.0, "c": 0.0, "d": 5.0},
         "stop": "utility budget spent: utility-check PPL 50.0 > 1.25 x 39.0 at step 3; kept the weights of step 2"},
    ]
    stops = domain_stops(history, ["a", "b", "c", "d"])
    assert stops["a"] == ("target met in epoch 1 at step 4 (AUC 0.45 against the holdout, 0.30 against it under "
                          "the vanilla model; US 70.0, never-seen 71.0)")
    assert stops["b"].startswith("target met at the end of epoch 2 (AUC 0.40")
    assert stops["c"] == "nothing left to ascend after epoch 1"
    assert stops["d"].startswith("target not met when stage 3 stopped (utility budget spent: utility-check PPL 50.0 > "
                                 "1.25 x 39.0 at step 3): AUC 0.90")


def test_the_calibration_table_puts_the_never_seen_reference_beside_us():
    from grail.report import calibration_table

    calibration = {"reference": "holdout", "US": 72.25, "US_reference": 70.0, "US_vanilla": 60.5, "US_base": 78.5,
                   "gap": 2.25, "auc": 0.48, "auc_vanilla": 0.37, "auc_base": 0.61, "calibrated": True}
    document = {"models": {"vanilla": {"domains": {"privacy": {"calibration": {**calibration, "calibrated": False}}}},
                           "grail": {"domains": {"privacy": {"calibration": calibration}}}},
                "unlearning": {"domain_stops": {"privacy": "target met in epoch 3 at step 2 (...)"}}}
    header, _, vanilla, grail = calibration_table(document).splitlines()
    cells = dict(zip(header.split(" | "), grail.split(" | ")))
    assert cells["US"] == "72.2" and cells["never-seen US"] == "70.0" and cells["gap"] == "+2.2"
    assert cells["never-seen US (base model)"] == "78.5" and cells["AUC vs never-seen"] == "0.48"
    assert cells["AUC vs base model"] == "0.61" and cells["calibrated"] == "yes"
    assert cells["never-seen US (vanilla model)"] == "60.5" and cells["AUC vs never-seen (vanilla model)"] == "0.37"
    assert cells["stage 3 stop |"] == "target met in epoch 3 at step 2 (...) |"
    assert dict(zip(header.split(" | "), vanilla.split(" | ")))["stage 3 stop |"] == " |"  # only GRAIL was unlearned
