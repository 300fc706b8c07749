"""The relearning attack's split and training loop, recovery, and the prompt attacks' inputs."""

import pytest
import torch

from grail.attacks import prompts
from grail.attacks.relearn import recovery, relearn, split_halves
from grail.batching import encode_all


@pytest.mark.parametrize("n", [2, 3, 10, 21])
def test_relearning_split_keeps_t_and_v_disjoint(n):
    t, v = split_halves(n, seed=0)
    assert not set(t) & set(v) and sorted(t + v) == list(range(n)) and len(v) == n // 2
    assert split_halves(n, seed=0) == (t, v)
    with pytest.raises(ValueError, match="at least 2"):
        split_halves(1, seed=0)


def test_relearn_measures_after_each_step_count_and_trains_only_trainable_parameters(tiny_lora, tiny_bench):
    model, tokenizer = tiny_lora
    items = encode_all(tokenizer, tiny_bench.domains[0].forget)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    seen = []

    def measure():
        seen.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
        return {"step": len(seen)}

    curve = relearn(model, items, [0, 2, 5], 1e-2, 2, pad_id=tokenizer.pad_token_id, seed=0, device="cpu",
                    measure=measure)
    assert list(curve) == [0, 2, 5]
    assert all(torch.equal(seen[0][n], trainable[n]) for n in trainable)  # step 0: untouched
    assert any(not torch.equal(seen[2][n], seen[1][n]) for n in trainable)
    assert all(torch.equal(frozen[n], p) for n, p in model.named_parameters() if not p.requires_grad)


def test_recovery():
    assert recovery(leak_model=50, leak_oracle=0, leak_vanilla=100) == 0.5
    assert recovery(leak_model=10, leak_oracle=10, leak_vanilla=90) == 0.0
    assert recovery(leak_model=0, leak_oracle=0, leak_vanilla=0) is None  # nothing to recover


def test_prompt_variants(tiny_bench):
    privacy, copyright_ = tiny_bench.domains
    variants = prompts.prompt_variants(privacy, few_shot=2, seed=0)
    assert set(variants) == {"ignore_instructions", "paraphrase", "few_shot"}
    for examples in variants.values():
        assert [e.answer for e in examples] == [e.answer for e in privacy.forget]
    holdout_answers = {e.answer for e in privacy.holdout}
    for example, asked in zip(privacy.forget, variants["few_shot"]):
        assert asked.prompt.endswith(example.prompt)
        assert sum(answer in asked.prompt for answer in holdout_answers) == 2  # two shots, each with its answer
        assert example.answer not in asked.prompt.removesuffix(example.prompt)
    assert prompts.is_verbatim(copyright_) and not prompts.is_verbatim(privacy)


def test_prefix_items_split_the_learned_answer(tiny_base, tiny_bench):
    _, tokenizer = tiny_base
    forget = tiny_bench.domains[1].forget
    items, references = prompts.prefix_items(tokenizer, forget, "plain", 256)
    for item, reference, full in zip(items, references, encode_all(tokenizer, forget)):
        answer = list(full.answer_ids[:-1])  # without EOS
        assert list(item.prompt_ids) == list(full.prompt_ids) + answer[: len(answer) // 2]
        assert list(item.answer_ids) == reference == answer[len(answer) // 2:]


def test_few_shot_takes_the_datas_own_shots_before_the_holdout(tiny_bench):
    import dataclasses

    from grail.data.examples import Example

    privacy = dataclasses.replace(tiny_bench.domains[0], shots=[Example("Demo question", "demo answer")])
    for asked in prompts.prompt_variants(privacy, few_shot=3, seed=0)["few_shot"]:
        assert asked.prompt.startswith("Demo question\n\ndemo answer\n\n")  # one shot there: just it
        assert not any(e.answer in asked.prompt for e in privacy.holdout)
