"""Membership-inference scores and their statistics against hand computations."""

import math
import zlib

import pytest
import torch

from grail.attacks.mia import (
    TokenStatistics,
    bootstrap_interval,
    forget_quality,
    mia_scores,
    privleak,
    statistics_from_logits,
    tpr_at_fpr,
)
from grail.metrics import roc_auc


def test_token_statistics_from_fixed_logits():
    # one row, two answer positions over a 3-token vocabulary; the first position is padding (mask False)
    logits = torch.tensor([[[0.0, 0.0, 0.0], [math.log(2), 0.0, 0.0], [0.0, math.log(3), 0.0]]])
    targets = torch.tensor([[0, 0, 2]])
    mask = torch.tensor([[False, True, True]])
    (stats,) = statistics_from_logits(logits, targets, mask)
    p1, p2 = [0.5, 0.25, 0.25], [0.2, 0.6, 0.2]
    assert stats.log_probs == pytest.approx([math.log(0.5), math.log(0.2)])
    for got_mu, got_sigma, p in zip(stats.mu, stats.sigma, (p1, p2)):
        mu = sum(q * math.log(q) for q in p)
        assert got_mu == pytest.approx(mu, abs=1e-6)
        assert got_sigma == pytest.approx(math.sqrt(sum(q * math.log(q) ** 2 for q in p) - mu ** 2), abs=1e-6)


def test_each_score_equals_its_hand_computation():
    stats = TokenStatistics(log_probs=[-0.1, -2.0, -0.5, -4.0, -1.0], mu=[-1.0] * 5, sigma=[0.5, 1.0, 1.0, 2.0, 1.0])
    text = "724-8961"
    scores = mia_scores(stats, text, k=0.4)  # 40 % of 5 tokens: the 2 lowest
    mean = (-0.1 - 2.0 - 0.5 - 4.0 - 1.0) / 5
    assert scores["loss"] == pytest.approx(mean)
    assert scores["zlib"] == pytest.approx(mean / len(zlib.compress(text.encode())))
    assert scores["min_k"] == pytest.approx((-4.0 - 2.0) / 2)
    standardised = [(-0.1 + 1) / 0.5, (-2.0 + 1) / 1, (-0.5 + 1) / 1, (-4.0 + 1) / 2, (-1.0 + 1) / 1]
    assert scores["min_k_plus_plus"] == pytest.approx(sum(sorted(standardised)[:2]) / 2)
    assert mia_scores(stats, text, k=0.01)["min_k"] == -4.0  # at least one token


def test_auc_on_known_lists():
    assert roc_auc([3, 4, 5], [0, 1, 2]) == 1.0
    assert roc_auc([0, 1, 2], [3, 4, 5]) == 0.0
    assert roc_auc([1, 1], [1, 1]) == 0.5  # ties count half
    # pairs (member > non-member): 2 > 1, 2 = 2 (half), 3 > 1, 3 > 2 -> 3.5 of 4
    assert roc_auc([2, 3], [1, 2]) == pytest.approx(3.5 / 4)


def test_tpr_at_fpr_on_known_lists():
    non_members = list(range(20))  # 0..19
    members = [18.5, 19.5, 25, 30, 5]
    # 5 % of 20 non-members: one false positive allowed, so the threshold is the second highest (18), strict
    assert tpr_at_fpr(members, non_members, 0.05) == pytest.approx(4 / 5)
    # no false positive allowed: above 19
    assert tpr_at_fpr(members, non_members, 0.01) == pytest.approx(3 / 5)
    assert tpr_at_fpr([1.0], [1.0, 0.0], 0.4) == 0.0  # a member tied with the threshold is not above it


def test_bootstrap_interval_brackets_the_statistic_and_is_seeded():
    members, others = [0.1 * i for i in range(30)], [0.1 * i + 1 for i in range(30)]
    low, high = bootstrap_interval(members, others, roc_auc, 200, seed=0)
    assert low <= roc_auc(members, others) <= high
    assert bootstrap_interval(members, others, roc_auc, 200, seed=0) == [low, high]
    assert bootstrap_interval([1, 2], [0, 0.5], roc_auc, 50, seed=1) == [1.0, 1.0]  # separable in every resample


def test_privleak_and_forget_quality():
    assert privleak(0.9, 0.6) == pytest.approx(0.5)
    assert privleak(0.6, 0.6) == 0.0
    same = [0.1, 0.5, 0.9, 1.3, 2.0]
    assert forget_quality(same, same) == pytest.approx(1.0)
    assert forget_quality([0.01 * i for i in range(20)], [5 + 0.01 * i for i in range(20)]) < 1e-6


def test_verdicts_follow_the_configured_thresholds():
    from grail.attacks.report import verdicts
    from grail.config import AttackConfig

    def mia(auc, privleak_, in_ci, quality):
        return {**{k: {"auc": auc, "privleak": privleak_} for k in ("loss", "zlib", "min_k", "min_k_plus_plus")},
                "forget_quality": quality, "auc_in_oracle_ci": in_ci}

    summary = {
        "mia": {"d": {"oracle": mia(0.5, 0.0, True, 1.0), "model": mia(0.56, 0.12, True, 0.01)}},
        "relearn": {"d": {"oracle": {"recovery": {"0": 0.0, "50": 0.0}},
                          "model": {"recovery": {"0": 0.0, "50": 0.3}}}},
        "precision": {"d": {"oracle": {"int4": {"excess": 0.0}}, "model": {"int4": {"excess": 10.0}}}},
        "prompts": {"d": {"oracle": {"few_shot": {"excess": 0.0}}, "model": {"few_shot": {"excess": 10.5}}}},
    }
    got = verdicts(summary, AttackConfig())["model"]["d"]
    assert got == {"membership_inference": "pass", "forget_quality": "fail", "relearning": "fail",
                   "precision": "pass", "prompts": "fail"}
    strict = verdicts(summary, AttackConfig(max_privleak=0.1, max_relearn_recovery=0.3))["model"]["d"]
    assert strict["membership_inference"] == "fail" and strict["relearning"] == "pass"
    summary["relearn"]["d"]["model"]["recovery"] = {"0": None, "50": None}  # the vanilla model leaked nothing
    assert verdicts(summary, AttackConfig())["model"]["d"]["relearning"] == "n/a"


def test_membership_inference_sets_the_holdout_against_the_forget_examples_it_stands_for():
    """A forget set of questions (indices 0-3, far likelier than any text) and texts (4-7) against a holdout of
    texts: with ``members`` the AUC is the texts' (0.5 here), the oracle's interval too; forget quality still takes
    the whole forget set."""
    from grail.attacks.mia import MIA_SCORES
    from grail.attacks.report import mia_summary
    from grail.config import AttackConfig

    def sets(texts: list[float]) -> dict:
        forget = [-0.5] * 4 + texts
        scores = {k: forget for k in MIA_SCORES}
        return {"mia": {"copyright": {"forget": scores, "holdout": {k: [-2.0, -1.0] * 4 for k in MIA_SCORES}}}}

    reports = {"oracle": sets([-2.0, -1.0] * 2), "grail": sets([-1.9, -1.1] * 2)}
    config = AttackConfig()
    mixed = mia_summary(reports, config, seed=0)["copyright"]
    paired = mia_summary(reports, config, seed=0, members={"copyright": [4, 5, 6, 7]})["copyright"]
    assert paired["oracle"]["loss"]["auc"] == 0.5 and mixed["oracle"]["loss"]["auc"] == 0.75
    assert paired["grail"]["loss"]["auc"] == 0.5 and paired["grail"]["auc_in_oracle_ci"]
    assert paired["grail"]["forget_quality"] == mixed["grail"]["forget_quality"]  # the whole forget set
