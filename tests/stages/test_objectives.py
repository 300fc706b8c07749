import math

import pytest
import torch
from tiny_configs import lora_on

from grail.config import UnlearnConfig
from grail.methods import METHODS
from grail.models import eval_mode, trainable_parameters
from grail.stages import objectives
from grail.stages.unlearn import unlearn

# These tests are of the paper's stage 3, as the published baselines run it (the replay term, the utility budget
# and the pools of every example have their own tests).
PAPER = METHODS["ga-gd-id"].unlearn


def test_random_and_adversarial_relabelling(tiny_lora, tiny_encoded):
    model, tokenizer = tiny_lora
    items = tiny_encoded["privacy/forget"]
    gen = torch.Generator().manual_seed(0)
    random_items = objectives.relabel(model, items, "random_labels", len(tokenizer), tokenizer.pad_token_id, "cpu", gen)
    adversarial = objectives.relabel(model, items, "adversarial", len(tokenizer), tokenizer.pad_token_id, "cpu", gen)
    for original, r, a in zip(items, random_items, adversarial):
        assert r.prompt_ids == a.prompt_ids == original.prompt_ids
        assert len(r.answer_ids) == len(a.answer_ids) == len(original.answer_ids)
        assert r.answer_ids != original.answer_ids
        # the adversarial answer is never the true token, position by position
        assert all(x != y for x, y in zip(a.answer_ids, original.answer_ids))


def test_npo_and_kl_at_the_reference_point(tiny_lora, tiny_encoded):
    model, tokenizer = tiny_lora
    model.eval()
    pad = tokenizer.pad_token_id
    forget, retain = tiny_encoded["copyright/forget"], tiny_encoded["copyright/retain"]
    npo_ref = objectives.reference_log_probs(model, forget, pad, "cpu", full=False)
    kl_ref = objectives.reference_log_probs(model, retain, pad, "cpu", full=True)
    npo, _ = objectives.npo_loss(model, forget, pad, "cpu", npo_ref, beta=0.1)
    assert npo.item() == pytest.approx(2 / 0.1 * math.log(2), rel=1e-4)  # log p == log p_ref
    kl, _ = objectives.kl_loss(model, retain, pad, "cpu", kl_ref)
    assert abs(kl.item()) < 1e-5
    with torch.no_grad():
        for p in trainable_parameters(model).values():
            p.add_(0.05 * torch.randn_like(p))
    assert objectives.kl_loss(model, retain, pad, "cpu", kl_ref)[0].item() > 1e-4


@pytest.mark.parametrize("forget_objective,retain_objective",
                         [("random_labels", "descent"), ("adversarial", "descent"), ("npo", "descent"),
                          ("to_base", "descent"), ("ascent", "kl")])
def test_every_objective_trains(tiny_lora, tiny_sets, forget_objective, retain_objective):
    model, tokenizer = tiny_lora
    params = trainable_parameters(model)
    before = {n: p.detach().clone() for n, p in params.items()}
    forget, retain = tiny_sets
    config = UnlearnConfig(**{**PAPER, "target": "none", "forget_objective": forget_objective}, epochs=2, lr=1e-2,
                           batch_size=4, retain_objective=retain_objective)
    log = unlearn(model, forget, retain, config, pad_id=tokenizer.pad_token_id, seed=0)
    assert all(not torch.equal(p.detach(), before[n]) for n, p in params.items())
    if forget_objective in ("random_labels", "adversarial"):  # descent on the new labels
        assert log[-1]["forget_loss"] < log[0]["forget_loss"]


def test_to_base_ascends_only_what_the_base_model_finds_less_likely_and_holds_the_rest_at_it(tiny_lora, tiny_sets):
    """At the base model itself (LoRA B zero) nothing is ascended and the KL is zero: the loss is 0. Moved away
    from it, the loss is the ascent on exactly the tokens the model finds likelier than the base did, plus the KL to
    the base's distributions."""
    model, tokenizer = tiny_lora
    with torch.no_grad():
        for name, p in trainable_parameters(model).items():
            if "lora_B" in name:
                p.zero_()
    pad = tokenizer.pad_token_id
    forget = tiny_sets[0]["privacy"]
    setup = objectives.Setup(UnlearnConfig(), pad, "cpu", 0, len(tokenizer))
    with eval_mode(model):
        reference = objectives.FORGET_OBJECTIVES["to_base"].prepare(model, forget, setup)
        at_base, _ = objectives.to_base_loss(model, forget, pad, "cpu", reference)
        assert abs(at_base.item()) < 1e-5
        with torch.no_grad():
            for p in trainable_parameters(model).values():
                p.add_(0.05 * torch.randn_like(p))
        loss, _ = objectives.to_base_loss(model, forget, pad, "cpu", reference)
        ascent, _ = objectives.ascent_loss(model, forget, pad, "cpu", math.inf, False, reference.log_probs)
        kl, _ = objectives.topk_kl_loss(model, forget, pad, "cpu", reference.distributions)
    assert loss.item() == pytest.approx(ascent.item() + kl.item()) and kl.item() > 1e-4 and ascent.item() < 0
    lp = objectives.reference_log_probs(model, forget, pad, "cpu", full=False)
    above = sum(int((lp[x] > reference.log_probs[x] + 1e-3).sum()) for x in forget)
    assert 0 < above < sum(len(x.answer_ids) for x in forget)  # some tokens above the base's level, not all


def test_to_base_leaves_the_end_of_answer_token_as_the_vanilla_model_has_it(tiny_lora, tiny_sets):
    """Every answer ends with EOS (the format, learnt from every training example): given ``eos_id``, ``to_base``
    never ascends it (no floor) and holds its distribution at the vanilla model's; every other position keeps the
    base model's reference."""
    model, tokenizer = tiny_lora
    with torch.no_grad():  # the "vanilla" model: LoRA moved away from the base model
        for p in trainable_parameters(model).values():
            p.add_(0.05 * torch.randn_like(p))
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    forget = tiny_sets[0]["privacy"]
    assert all(x.answer_ids[-1] == eos for x in forget)
    to_base = objectives.FORGET_OBJECTIVES["to_base"]
    with eval_mode(model):
        plain = to_base.prepare(model, forget, objectives.Setup(UnlearnConfig(), pad, "cpu", 0, len(tokenizer)))
        ended = to_base.prepare(model, forget, objectives.Setup(UnlearnConfig(), pad, "cpu", 0, len(tokenizer),
                                                                eos_id=eos))
        own = objectives.topk_reference(model, forget, pad, "cpu")
        ce, batch, logits = objectives._token_ce(model, forget, pad, "cpu")
    for x in forget:
        assert torch.equal(ended.log_probs[x][:-1], plain.log_probs[x][:-1]) and ended.log_probs[x][-1] == math.inf
        for base_part, vanilla_part, now in zip(plain.distributions[x], own[x], ended.distributions[x]):
            assert torch.equal(now[:-1], base_part[:-1]) and torch.equal(now[-1], vanilla_part[-1])
    floor = objectives._per_token(batch, ended.log_probs, forget, math.inf)
    pushed = objectives.ascendable(ce, logits, batch, math.inf, False, floor)
    assert not pushed[:, -1].any() and pushed[:, :-1].any()  # left-padded: every answer's EOS is the last position


def test_kl_retention_refuses_a_reference_beyond_its_memory_limit(tiny_lora, tiny_sets, monkeypatch):
    """The full-vocabulary reference of every retain token must fit: past the limit, a named error before any
    update (the weights untouched), not an out-of-memory kill."""
    from grail.config import ConfigError

    model, tokenizer = tiny_lora
    params = trainable_parameters(model)
    before = {n: p.detach().clone() for n, p in params.items()}
    forget, retain = tiny_sets
    tokens = sum(len(x.answer_ids) for items in retain.values() for x in items)
    monkeypatch.setattr(objectives, "KL_REFERENCE_LIMIT_BYTES", tokens * len(tokenizer) * 4 - 1)
    config = UnlearnConfig(**{**PAPER, "pools": "all", "target": "none"}, epochs=1, batch_size=4,
                           retain_objective="kl")
    with pytest.raises(ConfigError, match="unlearn.retain_objective: kl.*unlearn.pools: balanced"):
        unlearn(model, forget, retain, config, pad_id=tokenizer.pad_token_id, seed=0)
    assert all(torch.equal(p.detach(), before[n]) for n, p in params.items())
    monkeypatch.setattr(objectives, "KL_REFERENCE_LIMIT_BYTES", tokens * len(tokenizer) * 4)
    unlearn(model, forget, retain, config, pad_id=tokenizer.pad_token_id, seed=0)  # exactly at the limit: runs


def test_topk_kl_is_the_full_kl_when_k_covers_the_vocabulary_and_bounds_it_below_otherwise(tiny_lora, tiny_encoded):
    model, tokenizer = tiny_lora
    model.eval()
    pad, items = tokenizer.pad_token_id, tiny_encoded["privacy/retain"]
    full_ref = objectives.reference_log_probs(model, items, pad, "cpu", full=True)
    all_ref = objectives.topk_reference(model, items, pad, "cpu", k=len(tokenizer))
    few_ref = objectives.topk_reference(model, items, pad, "cpu", k=8)
    assert objectives.topk_kl_loss(model, items, pad, "cpu", all_ref)[0].item() == pytest.approx(0.0, abs=1e-5)
    with torch.no_grad():
        for p in trainable_parameters(model).values():
            p.add_(0.05 * torch.randn_like(p))
    # kl_loss is the mean over all tokens of KL(ref || now); one example at a time that is topk_kl_loss's unit
    full = sum(objectives.kl_loss(model, [x], pad, "cpu", full_ref)[0].item() for x in items) / len(items)
    assert objectives.topk_kl_loss(model, items, pad, "cpu", all_ref)[0].item() == pytest.approx(full, rel=1e-4)
    # merging the tail into one bucket can only lose information: the top-8 KL is a lower bound (and positive)
    top8 = objectives.topk_kl_loss(model, items, pad, "cpu", few_ref)[0].item()
    assert 0 < top8 <= full + 1e-6


def test_ascendable_tokens_by_hand():
    from grail.batching import Batch

    targets = torch.tensor([[1, 2, 0], [2, 2, 1]])
    answer_mask = torch.tensor([[True, True, False], [True, True, True]])
    batch = Batch(torch.zeros(2, 4, dtype=torch.long), torch.ones(2, 4, dtype=torch.long), targets, answer_mask)
    logits = torch.zeros(2, 3, 3)
    logits[0, 0, 1] = logits[0, 1, 0] = logits[1, 0, 2] = logits[1, 1, 2] = logits[1, 2, 1] = 5.0
    ce = torch.tensor([[0.1, 0.2, 0.0], [0.3, 9.0, 0.5]])
    floor = torch.tensor([[-1.0, -1.0, math.inf], [-0.1, -1.0, -1.0]])
    everything = objectives.ascendable(ce, logits, batch, math.inf, False, None)
    assert everything.tolist() == answer_mask.tolist()
    assert objectives.ascendable(ce, logits, batch, 1.0, False, None).tolist() == [[True, True, False],
                                                                                   [True, False, True]]
    predicted = [[True, False, False], [True, True, True]]  # (0, 1): the argmax is token 0, not 2
    assert objectives.ascendable(ce, logits, batch, math.inf, True, None).tolist() == predicted
    # -ce must exceed the floor: (1, 0) has log-prob -0.3 < -0.1 (the base model found it likelier)
    assert objectives.ascendable(ce, logits, batch, 1.0, True, floor).tolist() == [[True, False, False],
                                                                                  [False, False, True]]


def test_ascent_margin_keeps_pushing_a_token_until_it_is_that_far_below_the_best_other():
    from grail.batching import Batch

    targets = torch.tensor([[1, 1, 1]])
    batch = Batch(torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.long), targets,
                  torch.ones(1, 3, dtype=torch.bool))
    # the target's logit against the best other one: 1.0 above, 0.5 below, 2.0 below
    logits = torch.tensor([[[0.0, 1.0, 0.0], [3.0, 2.5, 0.0], [3.0, 1.0, 0.0]]])
    ce = torch.zeros(1, 3)
    assert objectives.ascendable(ce, logits, batch, math.inf, True, None).tolist() == [[True, False, False]]
    assert objectives.ascendable(ce, logits, batch, math.inf, True, None, 1.0).tolist() == [[True, True, False]]
    assert objectives.ascendable(ce, logits, batch, math.inf, True, None, 2.5).tolist() == [[True, True, True]]
    # without a "still predicted" stop the margin means nothing
    assert objectives.ascendable(ce, logits, batch, math.inf, False, None, 1.0).tolist() == [[True, True, True]]


def test_ascent_floor_is_the_models_own_log_probs_nothing_to_push(tiny_lora, tiny_encoded):
    model, tokenizer = tiny_lora
    model.eval()
    pad, items = tokenizer.pad_token_id, tiny_encoded["privacy/forget"]
    own = objectives.reference_log_probs(model, items, pad, "cpu", full=False)
    assert objectives.ascent_loss(model, items, pad, "cpu", math.inf, False, own)[0].item() == 0.0
    assert objectives.ascendable_share(model, items, pad, "cpu", math.inf, False, own) == 0.0
    lower = {x: lp - 1.0 for x, lp in own.items()}  # every token above its floor: plain ascent
    with_floor = objectives.ascent_loss(model, items, pad, "cpu", math.inf, False, lower)[0].item()
    assert with_floor == objectives.ascent_loss(model, items, pad, "cpu", math.inf, False)[0].item() < 0
    assert objectives.ascendable_share(model, items, pad, "cpu", math.inf, False, lower) == 100.0


def test_every_objective_the_config_names_is_registered():
    import typing

    hints = typing.get_type_hints(UnlearnConfig)
    assert set(typing.get_args(hints["forget_objective"])) == set(objectives.FORGET_OBJECTIVES)
    assert set(typing.get_args(hints["retain_objective"])) == set(objectives.RETAIN_OBJECTIVES)


def test_anchor_states_are_each_prompts_own_and_the_loss_is_their_relative_distance(tiny_lora, tiny_encoded):
    model, tokenizer = tiny_lora
    model.eval()
    pad = tokenizer.pad_token_id
    items = tiny_encoded["privacy/forget"] + tiny_encoded["copyright/forget"]  # prompts of several lengths
    reference = objectives.anchor_reference(model, items, pad, "cpu")

    def alone(item):  # the prompt run by itself, no padding: layers 1..L, positions but the last
        with torch.no_grad():
            out = model(torch.tensor([item.prompt_ids]), output_hidden_states=True)
        return torch.stack(out.hidden_states[1:])[:, 0, :-1]

    for item in items:
        assert reference[item].shape == alone(item).shape
        torch.testing.assert_close(reference[item], alone(item), atol=1e-4, rtol=1e-4)
    assert objectives.anchor_loss(model, items, pad, "cpu", reference)[0].item() < 1e-8
    with torch.no_grad():
        for p in trainable_parameters(model).values():
            p.add_(0.05 * torch.randn_like(p))
    by_hand = torch.stack([((alone(x) - reference[x]).pow(2).sum(-1) / reference[x].pow(2).sum(-1)).mean()
                           for x in items]).mean()
    loss, logged = objectives.anchor_loss(model, items, pad, "cpu", reference)
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-3) and by_hand.item() > 1e-4
    assert logged == loss.item() and loss.requires_grad


def test_the_anchor_holds_the_forget_prompts_states(tiny_base, tiny_sets):
    """Stage 3 with the anchor ends with the forget prompts' states nearer the vanilla model's than without it."""
    base, tokenizer = tiny_base
    forget, retain = tiny_sets
    items = [x for xs in forget.values() for x in xs]
    drift = {}
    for weight in (0.0, 100.0):
        model = lora_on(base)  # the same vanilla start for both
        reference = objectives.anchor_reference(model.eval(), items, tokenizer.pad_token_id, "cpu")
        config = UnlearnConfig(**{**PAPER, "anchor_weight": weight, "target": "none"}, epochs=2, lr=1e-2, batch_size=4)
        unlearn(model, forget, retain, config, pad_id=tokenizer.pad_token_id, seed=0)
        drift[weight] = objectives.anchor_loss(model.eval(), items, tokenizer.pad_token_id, "cpu", reference)[0].item()
    assert drift[100.0] < 0.5 * drift[0.0]


def test_anchor_refuses_reference_states_beyond_their_memory_limit(tiny_lora, tiny_sets, monkeypatch):
    """Every forget prompt's states at every layer must fit: past the limit, a named error before any update."""
    from grail.config import ConfigError

    model, tokenizer = tiny_lora
    params = trainable_parameters(model)
    before = {n: p.detach().clone() for n, p in params.items()}
    forget, retain = tiny_sets
    positions = sum(len(x.prompt_ids) - 1 for items in forget.values() for x in items)
    size = positions * model.config.num_hidden_layers * model.config.hidden_size * 4
    monkeypatch.setattr(objectives, "ANCHOR_REFERENCE_LIMIT_BYTES", size - 1)
    config = UnlearnConfig(**{**PAPER, "anchor_weight": 1.0, "target": "none"}, epochs=1, batch_size=4)
    with pytest.raises(ConfigError, match="unlearn.anchor_weight: .*unlearn.anchor_weight: 0"):
        unlearn(model, forget, retain, config, pad_id=tokenizer.pad_token_id, seed=0)
    assert all(torch.equal(p.detach(), before[n]) for n, p in params.items())
    monkeypatch.setattr(objectives, "ANCHOR_REFERENCE_LIMIT_BYTES", size)
    unlearn(model, forget, retain, config, pad_id=tokenizer.pad_token_id, seed=0)  # exactly at the limit: runs
