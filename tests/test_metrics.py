import math

import pytest
import torch

from grail.evaluation import summarize
from grail.metrics import contains_span, harmonic_success, mean_log_prob, perplexity, rouge_l, token_accuracy


def _fixed_logits():
    # 2 examples, 3 answer positions, vocab 4. Example 0 has 3 answer tokens, example 1 only its last 2.
    logits = torch.tensor([
        [[5.0, 0, 0, 0], [0, 5.0, 0, 0], [0, 0, 5.0, 0]],  # argmax 0, 1, 2
        [[9.0, 0, 0, 0], [0, 0, 0, 5.0], [0, 5.0, 0, 0]],  # argmax 0 (prompt, masked), 3, 1
    ])
    targets = torch.tensor([[0, 1, 3], [2, 3, 2]])
    mask = torch.tensor([[True, True, True], [False, True, True]])
    return logits, targets, mask


def test_token_accuracy_counts_answer_tokens_only():
    logits, targets, mask = _fixed_logits()
    acc = token_accuracy(logits, targets, mask)
    assert acc.tolist() == pytest.approx([2 / 3, 1 / 2])


def test_mean_log_prob_and_perplexity_by_hand():
    logits, targets, mask = _fixed_logits()
    lp = mean_log_prob(logits, targets, mask)
    big, small = math.log(math.exp(5) / (math.exp(5) + 3)), math.log(1 / (math.exp(5) + 3))
    assert lp.tolist() == pytest.approx([(big + big + small) / 3, (big + small) / 2], rel=1e-5)
    assert perplexity(lp.tolist()) == pytest.approx(math.exp(-(lp[0] + lp[1]).item() / 2), rel=1e-6)
    assert perplexity([-800.0]) == math.inf


def test_harmonic_success_and_summary():
    assert harmonic_success(90, 85) == pytest.approx(2 * 90 * 85 / 175)
    assert harmonic_success(0, 0) == 0
    domains = {"a": {"forget": {"accuracy": 10.0}, "retain": {"accuracy": 80.0}},
               "b": {"forget": {"accuracy": 30.0}, "retain": {"accuracy": 60.0}}}
    s = summarize(domains)
    assert s["domains"]["a"]["US"] == 90 and s["domains"]["b"]["RS"] == 60
    assert s["average"]["US"] == 80 and s["average"]["RS"] == 70
    assert s["average"]["HS"] == pytest.approx((harmonic_success(90, 80) + harmonic_success(70, 60)) / 2)
    assert "RS_heldout" not in s["average"]  # the data had no held-out facts


def test_heldout_and_paraphrase_scores_from_fixed_logits():
    """RS_heldout and US_paraphrase are RS and US on their own sets: computed here from fixed logits."""
    logits, targets, mask = _fixed_logits()
    heldout_acc = 100 * token_accuracy(logits, targets, mask).mean().item()  # (2/3 + 1/2) / 2
    paraphrase_acc = 100 * token_accuracy(logits[:1], targets[:1], mask[:1]).mean().item()  # 2/3
    domains = {"a": {"forget": {"accuracy": 10.0}, "retain": {"accuracy": 80.0},
                     "retain_heldout": {"accuracy": heldout_acc}, "forget_paraphrase": {"accuracy": paraphrase_acc}},
               "b": {"forget": {"accuracy": 30.0}, "retain": {"accuracy": 60.0},
                     "retain_heldout": {"accuracy": 40.0}, "forget_paraphrase": {"accuracy": 50.0}}}
    s = summarize(domains)
    assert s["domains"]["a"]["RS_heldout"] == pytest.approx(100 * (2 / 3 + 1 / 2) / 2)
    assert s["domains"]["a"]["US_paraphrase"] == pytest.approx(100 - 100 * 2 / 3)
    assert s["average"]["RS_heldout"] == pytest.approx((100 * (2 / 3 + 1 / 2) / 2 + 40) / 2)
    assert s["average"]["US_paraphrase"] == pytest.approx((100 - 100 * 2 / 3 + 50) / 2)


def test_rouge_l_and_span_matching():
    assert rouge_l("the cat sat", "the cat sat") == pytest.approx(100.0)
    assert rouge_l("the cat sat on the mat", "the cat") == pytest.approx(100 * 2 * (2 / 6) * 1 / (2 / 6 + 1))
    assert rouge_l("", "anything") == 0.0
    assert contains_span("Her number is 555-0199.\n", "555-0199")
    assert contains_span("Lives at 12  Alder   Lane", "12 Alder Lane")
    assert not contains_span("555-0198", "555-0199")
    # a whole answer as the span (data without spans): its own end punctuation does not hide a leak
    assert contains_span("It is  PARIS, of course", "Paris.")
    assert not contains_span("It is Paris", "Lyon.")


def test_the_datas_general_knowledge_is_scored_with_general_ability(tiny_base, tiny_bench):
    """TOFU's real-author / world-fact questions (a domain's ``knowledge``): answer-token accuracy under
    ``general``, for every model; they are never among the sets stage 0 trains on."""
    import dataclasses

    from grail.batching import encode_all
    from grail.data.examples import Benchmark, Example
    from grail.evaluation import evaluate, score_set

    model, tokenizer = tiny_base
    knowledge = [Example("Who wrote Hamlet?", "William Shakespeare"), Example("Capital of France?", "Paris")]
    bench = Benchmark([dataclasses.replace(tiny_bench.domains[0], knowledge=knowledge), tiny_bench.domains[1]])
    assert knowledge[0] not in [ex for _, _, examples in bench.measured_sets() for ex in examples]
    general = evaluate(model, tokenizer, bench, "plain", 64, 8, "cpu", general=True)["general"]
    expected = score_set(model, tokenizer, knowledge, encode_all(tokenizer, knowledge, "plain", 64), 8, "cpu")
    assert general["knowledge_n"] == 2 and general["knowledge_accuracy"] == expected["accuracy"]
    assert "knowledge" not in evaluate(model, tokenizer, tiny_bench, "plain", 64, 8, "cpu", general=True)["general"]
