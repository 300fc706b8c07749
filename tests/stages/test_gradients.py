import pytest
import torch
from reference import loop_abs_mean

from grail.batching import Encoded
from grail.config import GradientConfig, ModelConfig
from grail.models import canonical_name, make_trainable
from grail.stages.gradients import corrupt_answers, dataset_importance


def test_corruption_touches_half_the_answer_and_nothing_else():
    item = Encoded(prompt_ids=(5, 6, 7), answer_ids=tuple(range(10, 20)))
    rows = corrupt_answers([item], trials=3, vocab_size=1000, generator=torch.Generator().manual_seed(0))
    assert len(rows) == 3
    for row in rows:
        assert row.prompt_ids == item.prompt_ids and len(row.answer_ids) == 10
        changed = sum(a != b for a, b in zip(row.answer_ids, item.answer_ids))
        assert 1 <= changed <= 5  # floor(10 / 2) positions, drawn with replacement
    assert len({r.answer_ids for r in rows}) == 3  # independent corruptions


@pytest.mark.parametrize("adapter", ["lora", "full"])
def test_batched_per_example_abs_gradients_equal_a_batch_size_one_loop(tiny_lora, tiny_base, tiny_encoded, adapter):
    if adapter == "lora":
        model, tokenizer = tiny_lora
    else:
        import copy

        base, tokenizer = tiny_base
        model = make_trainable(copy.deepcopy(base), ModelConfig(name="tiny", adapter="full"))
    items = tiny_encoded["privacy/forget"][:5]
    config = GradientConfig(trials=2, batch_size=4)
    batched = dataset_importance(model, items, config, len(tokenizer), tokenizer.pad_token_id,
                                 torch.Generator().manual_seed(3))
    rows = corrupt_answers(items, 2, len(tokenizer), torch.Generator().manual_seed(3))
    looped = loop_abs_mean(model, rows, tokenizer.pad_token_id)
    assert set(batched) == set(looped)
    for name in looped:
        torch.testing.assert_close(batched[name], looped[name], rtol=1e-4, atol=1e-7)
    # the parameters got no .grad from the batched pass and still train afterwards
    assert all(p.requires_grad for n, p in model.named_parameters() if canonical_name(n) in looped)


def test_abs_mean_differs_from_abs_of_summed_gradient(tiny_lora, tiny_encoded):
    """A plain batched backward sums signed gradients; Eq. 3 needs the mean of per-example |g|."""
    model, tokenizer = tiny_lora
    items = tiny_encoded["copyright/retain"][:6]
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    abs_mean = dataset_importance(model, items, GradientConfig(trials=1), len(tokenizer), tokenizer.pad_token_id, gen())
    signed = dataset_importance(model, items, GradientConfig(trials=1, statistic="signed-mean"), len(tokenizer),
                                tokenizer.pad_token_id, gen())
    name = next(iter(abs_mean))
    assert not torch.allclose(abs_mean[name], signed[name])
    # signed-mean is |z| over the tensor of the mean signed gradient, here from a one-example-at-a-time loop
    rows = corrupt_answers(items, 1, len(tokenizer), gen())
    means = loop_abs_mean(model, rows, tokenizer.pad_token_id, absolute=False)
    for param, m in means.items():
        torch.testing.assert_close(signed[param], ((m - m.mean()) / m.std()).abs(), rtol=1e-3, atol=1e-4)


def test_bfloat16_base_gives_float32_scores_close_to_float32(tiny_encoded):
    from reference import lora_with_trained_b

    scores = {}
    for dtype in ("float32", "bfloat16"):
        model, tokenizer = lora_with_trained_b(ModelConfig(name="tiny", dtype=dtype, lora_r=4, lora_alpha=8,
                                                           lora_dropout=0.0))
        assert {p.dtype for p in model.parameters() if not p.requires_grad} == {getattr(torch, dtype)}
        scores[dtype] = dataset_importance(model, tiny_encoded["privacy/forget"], GradientConfig(), len(tokenizer),
                                           tokenizer.pad_token_id, torch.Generator().manual_seed(0))
    for name, expected in scores["float32"].items():
        got = scores["bfloat16"][name]
        assert got.dtype == torch.float32
        assert torch.corrcoef(torch.stack([got.flatten(), expected.flatten()]))[0, 1] > 0.95
