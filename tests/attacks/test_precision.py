"""The precision attack's round trips on known tensors, and the merged, quantized copy of a model."""

import pytest
import torch

from grail.attacks.precision import NF4_LEVELS, merged_copy, quantized_copy, round_trip


def test_int4_round_trip_of_a_known_tensor():
    # one group of 4: min 0, max 1.5 -> step 0.1; 0.26 -> round(2.6) = 3 -> 0.3; 0.74 -> 7.4 -> 0.7
    weight = torch.tensor([[0.0, 0.26, 0.74, 1.5]])
    assert torch.allclose(round_trip(weight, "int4", group_size=4), torch.tensor([[0.0, 0.3, 0.7, 1.5]]))
    # two groups of 2 keep their own ranges; a constant group is returned as is
    weight = torch.tensor([[1.0, 1.0, -2.0, 2.0]])
    assert torch.equal(round_trip(weight, "int4", group_size=2), weight)


def test_int4_has_at_most_16_levels_per_group_and_pads_a_short_last_group():
    weight = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    out = round_trip(weight, "int4", group_size=64)  # 150 entries: groups of 64, 64 and 22 (+ zero padding)
    assert out.shape == weight.shape
    groups = out.flatten()[:128].view(2, 64)
    assert all(len(g.unique()) <= 16 for g in groups)
    step = (weight.flatten()[:64].max() - weight.flatten()[:64].min()) / 15
    assert (out.flatten()[:64] - weight.flatten()[:64]).abs().max() <= step / 2 + 1e-6


def test_nf4_round_trip_of_a_known_tensor():
    weight = torch.tensor([2.0, -1.0, 0.3, 0.0])  # absmax 2: normalised 1, -0.5, 0.15, 0
    expected = torch.tensor([1.0, NF4_LEVELS[2].item(), NF4_LEVELS[9].item(), 0.0]) * 2  # -0.525, 0.1609
    assert torch.allclose(round_trip(weight, "nf4", group_size=4), expected)


def test_int8_and_float_round_trips():
    weight = torch.tensor([[1.0, -0.5, 0.004], [0.0, 0.0, 0.0]])
    out = round_trip(weight, "int8")
    assert torch.allclose(out[0], torch.tensor([1.0, -64 / 127, 1 / 127]))  # per-row absmax / 127 steps
    assert torch.equal(out[1], weight[1])  # an all-zero row stays zero
    x = torch.tensor([1.0 + 2 ** -10])
    assert round_trip(x, "bfloat16").item() == 1.0 and round_trip(x, "float16").item() == x.item()
    with pytest.raises(ValueError, match="unknown precision"):
        round_trip(x, "int2")


def test_quantized_copy_merges_lora_and_leaves_the_model_alone(tiny_lora):
    model, tokenizer = tiny_lora
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.tensor([tokenizer("hello world").input_ids])
    merged = merged_copy(model)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, model.eval()(ids).logits, atol=1e-5)
        rounded = quantized_copy(model, "int4", group_size=16)
        head = rounded.get_output_embeddings().weight
        for module in rounded.modules():
            if isinstance(module, torch.nn.Linear) and module.weight is not head:
                assert len(module.weight.flatten()[:16].unique()) <= 16
        assert not torch.allclose(rounded(ids).logits, merged(ids).logits)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
