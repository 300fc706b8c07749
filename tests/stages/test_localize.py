import re

import numpy as np
import pytest
import torch

from grail import io
from grail.config import LocalizeConfig
from grail.stages.localize import load_masks, localize, pack_bits, save_masks, top_k_mask


@pytest.mark.parametrize("shape,percent", [((8, 64), 10.0), ((576, 8), 20.0), ((7, 13), 33.0), ((100,), 1.0)])
def test_top_k_mask_holds_exactly_k_percent(shape, percent):
    scores = torch.randperm(torch.Size(shape).numel()).float().view(shape)  # distinct: no ties
    mask = top_k_mask(scores, percent)
    k = round(scores.numel() * percent / 100)
    assert mask.dtype == torch.bool and mask.shape == scores.shape
    assert int(mask.sum()) == k
    # exactly the k largest
    assert scores[mask].min() > scores[~mask].max()


def _scores(*top_entries, n=10):
    """Scores of a 10-entry tensor whose top entries are the given indices (in order)."""
    s = torch.zeros(n)
    for rank, index in enumerate(top_entries):
        s[index] = 100.0 - rank
    return s


def test_set_algebra_on_hand_made_scores():
    # k_ur = 20 % of 10 entries = 2 entries, k_rr = 30 % = 3 entries.
    importance = {
        "a/forget": {"w": _scores(0, 1)},
        "a/retain": {"w": _scores(1, 2, 3)},
        "b/forget": {"w": _scores(4, 5)},
        "b/retain": {"w": _scores(5, 3, 2)},
    }
    masks = localize(importance, ["a", "b"], LocalizeConfig(k_ur=20, k_rr=30))
    as_set = lambda m: set(torch.nonzero(m).flatten().tolist())  # noqa: E731
    # OP-UR = ({0,1} | {4,5}) & ({1,2} | {5,3}) = {1, 5}
    assert as_set(masks["op_ur"]["w"]) == {1, 5}
    # OP-RR = {1,2,3} & {5,3,2} = {2, 3}
    assert as_set(masks["op_rr"]["w"]) == {2, 3}
    assert as_set(masks["frozen"]["w"]) == {1, 2, 3, 5}


@pytest.mark.parametrize("use_ur,use_rr", [(False, True), (True, False), (False, False)])
def test_ablations_switch_parts_of_the_frozen_set(use_ur, use_rr):
    generator = torch.Generator().manual_seed(0)  # unseeded, about one draw in ten left OP-UR empty
    importance = {f"{d}/{s}": {"w": torch.randperm(50, generator=generator).float()}
                  for d in ("a", "b") for s in ("forget", "retain")}
    masks = localize(importance, ["a", "b"], LocalizeConfig(use_op_ur=use_ur, use_op_rr=use_rr))
    top = {name: {k: top_k_mask(scores["w"], k) for k in (10.0, 20.0)} for name, scores in importance.items()}
    op_ur = (top["a/forget"][10.0] | top["b/forget"][10.0]) & (top["a/retain"][10.0] | top["b/retain"][10.0])
    op_rr = top["a/retain"][20.0] & top["b/retain"][20.0]
    expected = torch.zeros(50, dtype=torch.bool)
    if use_ur:
        expected |= op_ur
    if use_rr:
        expected |= op_rr
    assert expected.any() == (use_ur or use_rr) and torch.equal(masks["frozen"]["w"], expected)


def test_single_domain_masks_round_trip_through_the_file(tmp_path):
    importance = {"only/forget": {"x.w": torch.rand(4, 5)}, "only/retain": {"x.w": torch.rand(4, 5)}}
    masks = localize(importance, ["only"], LocalizeConfig())
    save_masks(tmp_path / "masks.safetensors", masks)
    assert set(io.load_tensors(tmp_path / "masks.safetensors")) == {"op_ur.x.w", "op_rr.x.w", "frozen.x.w"}
    back = load_masks(tmp_path / "masks.safetensors")
    assert all(torch.equal(back[k]["x.w"], masks[k]["x.w"]) for k in masks)


ODD_SHAPES = [(), (1,), (0,), (3, 0), (7,), (8,), (9,), (3, 5, 7), (13, 64), (1, 1, 1)]


def test_packed_masks_round_trip_exactly_whatever_their_shape(tmp_path):
    generator = torch.Generator().manual_seed(0)
    masks = {kind: {f"p{i}.w": torch.rand(shape, generator=generator) < density
                    for i, shape in enumerate(ODD_SHAPES)}
             for kind, density in (("op_ur", 0.1), ("op_rr", 0.5), ("frozen", 0.9))}
    masks["frozen"]["full.w"], masks["op_ur"]["none.w"] = torch.ones(3, 3, dtype=torch.bool), torch.zeros(11).bool()
    save_masks(tmp_path / "masks.safetensors", masks)
    stored = io.load_tensors(tmp_path / "masks.safetensors")
    assert all(t.dtype == torch.uint8 for t in stored.values())
    back = load_masks(tmp_path / "masks.safetensors")
    assert back.keys() == masks.keys()
    for kind, by_name in masks.items():
        assert back[kind].keys() == by_name.keys()
        for name, mask in by_name.items():
            got = back[kind][name]
            assert got.dtype == torch.bool and got.shape == mask.shape and torch.equal(got, mask), (kind, name)


def test_bits_are_packed_as_numpy_packbits_packs_them():
    mask = torch.rand(5, 7) < 0.5
    assert pack_bits(mask).tolist() == np.packbits(mask.numpy().flatten()).tolist()


def test_a_large_mask_takes_one_bit_per_entry_on_disk(tmp_path):
    mask = torch.rand(1000, 1003) < 0.3
    save_masks(tmp_path / "packed.safetensors", {"frozen": {"w": mask}})
    io.save_tensors(tmp_path / "bool.safetensors", {"frozen.w": mask})
    packed_size = (tmp_path / "packed.safetensors").stat().st_size
    assert packed_size < mask.numel() / 8 + 1024  # the header: key, dtype, shape, metadata
    assert (tmp_path / "bool.safetensors").stat().st_size > 7.9 * packed_size


def test_a_run_folders_older_bool_masks_still_load(tmp_path):
    masks = {kind: {"a.w": torch.rand(4, 5) < 0.3, "b": torch.rand(9) < 0.6} for kind in ("op_ur", "op_rr", "frozen")}
    io.save_tensors(tmp_path / "masks.safetensors", {f"{k}.{n}": m for k, by_name in masks.items()
                                                     for n, m in by_name.items()})
    back = load_masks(tmp_path / "masks.safetensors")
    assert all(torch.equal(back[k][n], m) for k, by_name in masks.items() for n, m in by_name.items())


def test_a_packed_mask_without_its_shape_is_refused_naming_the_file_and_the_key(tmp_path):
    path = tmp_path / "masks.safetensors"
    packed = {"frozen.a.w": pack_bits(torch.ones(4, 5, dtype=torch.bool)), "op_ur.b": pack_bits(torch.ones(3).bool())}
    io.save_tensors(path, packed, {"layout": "packbits", "op_ur.b": "3"})
    named = re.escape(f"{path}: mask 'frozen.a.w'")
    with pytest.raises(io.UnreadableFileError, match=rf"{named} is packed .* records no shape"):
        load_masks(path)
    io.save_tensors(path, packed, {"layout": "packbits", "op_ur.b": "3", "frozen.a.w": "4,50"})  # bytes too few
    with pytest.raises(io.UnreadableFileError, match=rf"{named} holds 3 .* shape \(4, 50\)"):
        load_masks(path)


def test_memflex_selects_whole_tensors_by_cosine_and_magnitude():
    from grail.stages.localize import memflex_frozen, memflex_selection

    g = torch.tensor([1.0, 0.0, 0.0, 0.0])
    forget = {"apart": g, "aligned": g, "small": 1e-5 * torch.tensor([0.0, 1.0, 0.0, 0.0])}
    retain = {"apart": torch.tensor([0.0, 1.0, 0.0, 0.0]), "aligned": g, "small": g}
    selected = memflex_selection(forget, retain, mu=0.92, sigma=6e-4)
    assert selected == {"apart": True, "aligned": False, "small": False}
    other_domain = {"apart": False, "aligned": True, "small": False}
    frozen = memflex_frozen([selected, other_domain], {n: torch.Size([2, 2]) for n in forget})
    assert not frozen["apart"].any() and not frozen["aligned"].any() and frozen["small"].all()


def test_signed_gradient_means_feed_memflex(tiny_lora, tiny_encoded):
    from grail.config import GradientConfig
    from grail.stages.gradients import gradient_means
    from grail.stages.localize import memflex_selection

    model, tokenizer = tiny_lora
    means = {s: gradient_means(model, tiny_encoded[f"privacy/{s}"], GradientConfig(trials=1), len(tokenizer),
                               tokenizer.pad_token_id, torch.Generator().manual_seed(0), absolute=False)
             for s in ("forget", "retain")}
    selected = memflex_selection(means["forget"], means["retain"], mu=1.01, sigma=0.0)
    assert all(selected.values())  # every cosine is < 1.01 and every tensor has a gradient
    assert any((m < 0).any() for m in means["forget"].values())  # signed, not absolute


@pytest.mark.parametrize("use_ur,use_rr,selection", [(True, True, "torch"), (False, True, "torch"),
                                                     (True, False, "torch"), (True, True, "python")])
def test_localize_equals_the_python_set_reference(use_ur, use_rr, selection):
    from reference import set_localize

    generator = torch.Generator().manual_seed(0)
    shapes = {"a.lora_A.weight": (8, 96), "a.lora_B.weight": (200, 8), "b.weight": (33, 7)}
    importance = {f"{d}/{s}": {n: torch.rand(shape, generator=generator) for n, shape in shapes.items()}
                  for d in ("p", "c") for s in ("forget", "retain")}
    config = LocalizeConfig(k_ur=10, k_rr=30, use_op_ur=use_ur, use_op_rr=use_rr)
    ours, reference = localize(importance, ["p", "c"], config), set_localize(importance, ["p", "c"], config, selection)
    for kind in ours:
        for name in shapes:
            assert torch.equal(ours[kind][name], reference[kind][name]), (kind, name)
