import math

import pytest
import torch

from grail import calibration as calibration_module
from grail.batching import Encoded, encode_all
from grail.calibration import MIN_HOLDOUT, NeverSeen, calibration, never_seen
from grail.config import UnlearnConfig
from grail.methods import METHODS
from grail.models import base_weights, trainable_parameters
from grail.scoring import teacher_forced
from grail.stages.unlearn import unlearn


def _scripted(monkeypatch, forget, holdout, forget_log_probs):
    """Calibration's scoring scripted: every holdout example at log-prob -2 (US 50); the forget examples of each
    domain all at the next value of ``forget_log_probs[domain]`` at each measurement (the last one forever).
    Returns the measured domains in order."""
    domain_of = {x: d for d, items in forget.items() for x in items}
    holdout_items = {x for items in holdout.values() for x in items}
    calls = {d: iter(values) for d, values in forget_log_probs.items()}
    latest, measured = {}, []

    def scored(model, items, *args):
        if items[0] in holdout_items:
            return [0.5] * len(items), [-2.0] * len(items), None
        domain = domain_of[items[0]]
        latest[domain] = next(calls[domain], latest.get(domain))
        measured.append(domain)
        return [0.5] * len(items), [latest[domain]] * len(items), None

    monkeypatch.setattr(calibration_module, "teacher_forced", scored)
    return measured


def _auc(members, others):
    pairs = [(a > b) + 0.5 * (a == b) for a in members for b in others]
    return sum(pairs) / len(pairs)


def test_the_auc_says_how_familiar_the_forget_set_is_against_never_seen_examples(tiny_lora, tiny_bench):
    """The real scores of one model: the AUCs are those of the per-example mean log-probabilities, forget against
    the holdout scored under the same model, under the vanilla model and under the base model; US on each set and
    the gap beside them. With a holdout the stop asks the first two; the base model is reported only."""
    model, tokenizer = tiny_lora
    with torch.no_grad():  # a LoRA model that differs from its base
        for p in trainable_parameters(model).values():
            p.add_(0.05)
    domain = tiny_bench.domains[0]
    forget, holdout = encode_all(tokenizer, domain.forget), encode_all(tokenizer, domain.holdout)
    pad = tokenizer.pad_token_id
    f_acc, f_lp, _ = teacher_forced(model, forget, pad, 8, "cpu")
    h_acc, h_lp, _ = teacher_forced(model, holdout, pad, 8, "cpu")
    with base_weights(model) as base:
        b_acc, b_lp, _ = teacher_forced(base, holdout, pad, 8, "cpu")
    v_acc, v_lp = [0.9] * len(holdout), [x - 0.5 for x in h_lp]  # the holdout under a "vanilla model"
    reference = NeverSeen(tuple(holdout), tuple(b_acc), tuple(b_lp), tuple(v_acc), tuple(v_lp))
    scores = calibration(model, forget, reference, pad, 8, "cpu")
    assert scores["auc"] == pytest.approx(_auc(f_lp, h_lp)) and scores["auc_base"] == pytest.approx(_auc(f_lp, b_lp))
    assert scores["auc_vanilla"] == pytest.approx(_auc(f_lp, v_lp)) and scores["US_vanilla"] == pytest.approx(10.0)
    assert scores["auc"] != scores["auc_base"] and scores["auc"] != scores["auc_vanilla"]
    assert scores["US"] == pytest.approx(100 * (1 - sum(f_acc) / len(f_acc)))
    assert scores["US_reference"] == pytest.approx(100 * (1 - sum(h_acc) / len(h_acc)))
    assert scores["US_base"] == pytest.approx(100 * (1 - sum(b_acc) / len(b_acc)))
    assert scores["gap"] == pytest.approx(scores["US"] - scores["US_reference"])
    assert scores["reference"] == "holdout"
    assert scores["calibrated"] == (min(scores["auc"], scores["auc_vanilla"]) <= 0.5)
    # the same set against itself is exactly chance, and calibrated
    itself = calibration(model, forget, NeverSeen(tuple(forget), (1.0,), (0.0,), (1.0,), (0.0,)), pad, 8, "cpu")
    assert itself["auc"] == 0.5 and itself["gap"] == 0.0 and itself["calibrated"] and itself["auc_vanilla"] == 0.0
    # either reference is enough: a forget set far likelier than its holdout but not than the vanilla's scores
    against_vanilla = calibration(model, forget, NeverSeen(tuple(holdout), (1.0,), (-99.0,), (0.0,), (0.0,)),
                                  pad, 8, "cpu")
    assert against_vanilla["auc_vanilla"] == 0.0 and against_vanilla["calibrated"]


def test_with_a_holdout_the_base_models_scores_do_not_stop_a_domain(monkeypatch):
    """A forget set likelier than its holdout under the model and under the vanilla model is not calibrated, however
    unlikely the base model found the holdout: a model that never saw data of this kind is not the reference."""
    forget, holdout = [Encoded((1,), (2,))] * 3, [Encoded((1,), (3,))] * 3
    monkeypatch.setattr(calibration_module, "teacher_forced",
                        lambda model, items, *args: ([1.0] * 3, [-1.0 if items[0] == forget[0] else -3.0] * 3, None))
    scores = calibration(None, forget, NeverSeen(tuple(holdout), (0.0,), (0.0,), (0.0,), (-3.0,)), 0, 8, "cpu")
    assert scores["auc"] == 1.0 and scores["auc_vanilla"] == 1.0 and scores["auc_base"] == 0.0
    assert not scores["calibrated"]


def test_too_small_a_holdout_falls_back_to_the_base_models_scores_with_a_warning(tiny_lora, tiny_bench):
    model, tokenizer = tiny_lora
    forget = encode_all(tokenizer, tiny_bench.domains[0].forget)
    with torch.no_grad():  # a LoRA model that differs from its base
        for p in trainable_parameters(model).values():
            p.add_(0.05)
    with pytest.warns(UserWarning, match=f"'privacy': 3 holdout examples \\(fewer than {MIN_HOLDOUT}\\)"):
        reference = never_seen(model, "privacy", forget, forget[:3], tokenizer.pad_token_id, 8, "cpu")
    with base_weights(model) as base:
        base_accuracy, base_log_probs, _ = teacher_forced(base, forget, tokenizer.pad_token_id, 8, "cpu")
    assert reference.kind == "base" and list(reference.base_log_probs) == base_log_probs
    assert list(reference.base_accuracy) == base_accuracy and reference.holdout == ()
    scores = calibration(model, forget, reference, tokenizer.pad_token_id, 8, "cpu")
    assert scores["reference"] == "base" and scores["auc"] is None  # the LoRA model against the base's fixed scores
    assert scores["auc_base"] == pytest.approx(_auc(teacher_forced(model, forget, tokenizer.pad_token_id, 8,
                                                                   "cpu")[1], base_log_probs))
    assert scores["US_reference"] == scores["US_base"]


def test_the_calibrated_target_stops_each_domain_once_its_forget_set_is_no_more_familiar(tiny_lora, tiny_sets,
                                                                                          monkeypatch):
    """Privacy's forget set is as likely as its holdout from the first epoch's end on (AUC 0.5), copyright's only
    from the second's: privacy stops ascending after one epoch, copyright after two, and the stage stops then."""
    model, tokenizer = tiny_lora
    forget, retain = tiny_sets
    # stand-ins of at least MIN_HOLDOUT examples (the scores are scripted)
    holdout = {d: [Encoded(x.prompt_ids + (t,), x.answer_ids) for t in (1, 2, 3) for x in items]
               for d, items in forget.items()}
    _scripted(monkeypatch, forget, holdout, {"privacy": [-0.1, -2.0], "copyright": [-0.1, -0.5, -3.0]})
    config = UnlearnConfig(**{**METHODS["ga-gd-id"].unlearn, "target": "calibrated"}, epochs=5, batch_size=4,
                           lr=1e-3)
    log = unlearn(model, forget, retain, config, pad_id=tokenizer.pad_token_id, seed=0, holdout=holdout)
    assert [e["ascending"] for e in log] == [["privacy", "copyright"], ["copyright"]]
    assert log[-1]["stop"].startswith("target met: forget set no more familiar than never-seen data")
    assert log[0]["target"]["privacy"]["auc"] == 0.5 and log[0]["target"]["privacy"]["met"]
    assert log[0]["target"]["copyright"]["auc"] == 1.0 and not log[0]["target"]["copyright"]["met"]
    assert log[1]["target"]["copyright"]["auc"] == 0.0 and log[1]["target"]["copyright"]["reference"] == "holdout"
    assert log[1]["target"]["copyright"]["auc_base"] == 0.0  # the scripted base model scores the holdout at -2 too


def test_without_a_holdout_the_calibrated_target_compares_with_the_base_model(tiny_lora, tiny_sets):
    """No holdout: stage 3 still stops on calibration, against the base model's scores of the forget set (said
    in a warning and in every measurement), never silently on a US target."""
    model, tokenizer = tiny_lora
    forget, retain = tiny_sets
    config = UnlearnConfig(**{**METHODS["ga-gd-id"].unlearn, "target": "calibrated"}, epochs=1, batch_size=4,
                           lr=1e-3)
    with pytest.warns(UserWarning, match="base model's scores"):
        log = unlearn(model, forget, retain, config, pad_id=tokenizer.pad_token_id, seed=0)
    assert {m["reference"] for m in log[0]["target"].values()} == {"base"}
    assert all(m["auc"] is None and 0 <= m["auc_base"] <= 1 and math.isfinite(m["gap"])
               for m in log[0]["target"].values())


def test_a_domain_at_its_target_is_held_where_it_met_it_while_the_others_go_on(tiny_lora, tiny_sets, monkeypatch):
    """``to_base`` holds a domain that met its target at its own next-token distributions of that moment while the
    other domain goes on: from the step privacy meets its target on, its forget examples enter only the hold (a KL
    to the distributions taken then), and copyright's only the full objective."""
    from grail.stages import objectives

    model, tokenizer = tiny_lora
    forget, retain = tiny_sets
    holdout = {d: [Encoded(x.prompt_ids + (t,), x.answer_ids) for t in (1, 2, 3) for x in items]
               for d, items in forget.items()}
    _scripted(monkeypatch, forget, holdout, {"privacy": [-0.1, -2.0], "copyright": [-0.1, -0.5, -3.0]})
    domain_of = {x: d for d, items in forget.items() for x in items}
    unlearned, held, snapshots = [], [], []  # per step, the domains each term saw; the distributions held
    to_base = objectives.FORGET_OBJECTIVES["to_base"]

    def loss(model, items, setup, prepared):
        unlearned.append({domain_of[x] for x in items})
        return to_base.loss(model, items, setup, prepared)

    topk_reference, topk_kl_loss = objectives.topk_reference, objectives.topk_kl_loss

    def snapshot(model, items, *args):
        out = topk_reference(model, items, *args)
        if len({domain_of.get(x) for x in items}) == 1:  # one domain's forget answers (the base's are all domains')
            snapshots.append(({domain_of[x] for x in items}, out))
        return out

    def kl(model, items, pad_id, device, reference):
        if snapshots and set(reference) <= set(snapshots[0][1]):  # the hold's (to_base's own KL covers all)
            held.append(({domain_of[x] for x in items}, {x: reference[x] for x in items}))
        return topk_kl_loss(model, items, pad_id, device, reference)

    monkeypatch.setitem(objectives.FORGET_OBJECTIVES, "to_base",
                        objectives.Objective(to_base.prepare, loss, holds=True))
    monkeypatch.setattr(objectives, "topk_reference", snapshot)
    monkeypatch.setattr(objectives, "topk_kl_loss", kl)
    config = UnlearnConfig(epochs=5, batch_size=4, lr=1e-3, target_check_steps=0, general_weight=0.0,
                           anchor_weight=0.0, utility_budget=None)
    log = unlearn(model, forget, retain, config, pad_id=tokenizer.pad_token_id, seed=0, holdout=holdout)
    assert [e["ascending"] for e in log] == [["privacy", "copyright"], ["copyright"]]
    first_epoch = -(-sum(len(items) for items in forget.values()) // 2)
    assert [domains for domains, _ in snapshots] == [{"privacy"}]  # taken once, when privacy met its target
    assert held and all(domains == {"privacy"} for domains, _ in held)  # privacy's examples, once it is held
    assert all(reference[x] is snapshots[0][1][x] for _, reference in held for x in reference)
    assert all(domains == {"copyright"} for domains in unlearned[first_epoch:])


def test_the_calibrated_target_measures_the_forget_examples_its_holdout_stands_for(tiny_lora, monkeypatch):
    """A forget set of two kinds (MUSE's questions and texts) against a holdout of texts: the target measures the
    texts alone (``members``), as likely as the holdout here, so calibrated, where the questions, far likelier
    than any text, would keep the whole set from ever looking like the holdout."""
    from grail.stages.targets import forget_target

    model, _ = tiny_lora
    texts, questions = [Encoded((1,), (10 + i,)) for i in range(4)], [Encoded((1,), (20 + i,)) for i in range(4)]
    holdout = [Encoded((1,), (30 + i,)) for i in range(MIN_HOLDOUT)]

    def scored(model, items, *args):  # texts and holdout at -2, questions at -0.5, under every model
        return [0.5] * len(items), [-0.5 if x in questions else -2.0 for x in items], None

    monkeypatch.setattr(calibration_module, "teacher_forced", scored)
    config = UnlearnConfig(target="calibrated")
    forget = {"copyright": questions + texts}
    mixed = forget_target(config, model, forget, {"copyright": holdout}, 0, "cpu")
    paired = forget_target(config, model, forget, {"copyright": holdout}, 0, "cpu", {"copyright": texts})
    assert paired.forget["copyright"] == texts and mixed.forget["copyright"] == questions + texts
    assert paired.measure(model, "copyright")["met"] and paired.measure(model, "copyright")["auc"] == 0.5
    assert not mixed.measure(model, "copyright")["met"] and mixed.measure(model, "copyright")["auc"] > 0.5
