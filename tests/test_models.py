"""Models and what trains in them: the tiny model and tokenizer, eval mode, the trainable parameters (LoRA or the
linear weights themselves), their save / load / swap round trips and the base model's weights."""

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from grail.config import ConfigError, ModelConfig
from grail.models import (
    FULL_WEIGHTS_FILE,
    PEFT_WEIGHTS_FILE,
    base_weights,
    cache_dir,
    canonical_name,
    eval_mode,
    load_base,
    load_trainable_state,
    make_trainable,
    read_trainable_file,
    save_trainable,
    set_trainable,
    swapped_trainable,
    target_linear_names,
    tiny_model,
    trainable_parameters,
    trainable_state,
)

FULL = ModelConfig(name="tiny", adapter="full")
LORA = ModelConfig(name="tiny", lora_r=4, lora_alpha=8, lora_dropout=0.0)
IDS = torch.tensor([[5, 17, 42, 7, 99, 3]])


def _logits(model, ids=IDS):
    with torch.no_grad():
        return model(ids).logits


def _perturb(model, scale=0.05, seed=1):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in trainable_parameters(model).values():
            p.add_(scale * torch.randn(p.shape, generator=generator))


@pytest.fixture
def full_model(tiny_base):
    base, _ = tiny_base
    return make_trainable(copy.deepcopy(base), FULL)


def test_the_tiny_model_is_built_from_its_config_and_seed_without_drawing_from_the_global_rng():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = tiny_model(300, seed=0)
    assert torch.equal(torch.rand(3), expected_next)  # building it left the global random state alone
    config = a.config
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (300, 64, 2)
    assert a.get_input_embeddings().weight.shape == (300, 64) and a.get_output_embeddings().weight.shape == (300, 64)
    assert not config.tie_word_embeddings and a.get_output_embeddings().weight is not a.get_input_embeddings().weight
    assert len(a.model.layers) == 2
    b, c = tiny_model(300, seed=0), tiny_model(300, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.model.layers[0].self_attn.q_proj.weight, c.model.layers[0].self_attn.q_proj.weight)


def test_load_base_gives_a_frozen_eval_model_with_a_padding_tokenizer(tiny_base):
    model, tokenizer = tiny_base
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model.config.vocab_size == len(tokenizer)
    assert tokenizer.pad_token_id is not None and tokenizer.pad_token_id == tokenizer.eos_token_id
    text = "Zoë's number: +44 (0)20 7946 0958 — ünïcödé ✓"  # byte-level: any text encodes and decodes back
    assert tokenizer.decode(tokenizer(text).input_ids) == text
    again, _ = load_base(ModelConfig(name="tiny"))  # the same seed: the same weights
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters()))


def test_load_base_in_bfloat16_and_an_unknown_model_is_a_config_error(tmp_path):
    model, _ = load_base(ModelConfig(name="tiny", dtype="bfloat16"))
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ConfigError, match=f"model.name '{missing}': cannot load it"):
        load_base(ModelConfig(name=missing))


def test_cache_dir_follows_grail_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAIL_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("GRAIL_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "grail"


@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_turns_dropout_off_inside_and_restores_the_mode_after(training):
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    model.train(training)
    x = torch.ones(64, 4)
    with eval_mode(model) as inside:
        assert inside is model and not model.training and not model[1].training
        assert torch.equal(model(x), model(x))  # no dropout
    assert model.training == training and model[1].training == training
    with pytest.raises(RuntimeError, match="a bug"), eval_mode(model):
        raise RuntimeError("a bug")
    assert model.training == training


def test_target_linear_names_are_every_linear_but_the_head_or_the_named_ones(tiny_base):
    model, _ = tiny_base
    every = target_linear_names(model, "all-linear")
    per_layer = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                 "mlp.up_proj", "mlp.down_proj"]
    assert sorted(every) == sorted(f"model.layers.{i}.{n}" for i in range(2) for n in per_layer)
    assert "lm_head" not in every
    assert target_linear_names(model, ["q_proj", "v_proj"]) == [
        f"model.layers.{i}.self_attn.{n}" for i in range(2) for n in ("q_proj", "v_proj")]
    with pytest.raises(ValueError, match=r"model.target_modules \['qkv'\] matches no linear layer"):
        target_linear_names(model, ["qkv"])


def test_full_adapter_trains_exactly_the_target_weights(tiny_base):
    base, _ = tiny_base
    model = make_trainable(copy.deepcopy(base), ModelConfig(name="tiny", adapter="full",
                                                            target_modules=["q_proj", "down_proj"]))
    names = list(trainable_parameters(model))
    assert names == [f"model.layers.{i}.{n}.weight" for i in range(2) for n in ("self_attn.q_proj", "mlp.down_proj")]
    assert sum(p.requires_grad for p in model.parameters()) == 4
    assert not any(p.requires_grad for p in base.parameters())  # the shared base stays frozen


def test_lora_parameters_are_keyed_by_their_name_on_disk(tiny_lora, tmp_path):
    model, _ = tiny_lora
    params = trainable_parameters(model)
    assert params and all("lora_" in n and ".default." not in n for n in params)
    assert set(params) == {canonical_name(n) for n, p in model.named_parameters() if p.requires_grad}
    assert canonical_name("a.q_proj.lora_A.default.weight") == "a.q_proj.lora_A.weight"
    assert canonical_name("a.q_proj.weight") == "a.q_proj.weight"
    save_trainable(model, tmp_path / "adapter")
    assert (tmp_path / "adapter" / PEFT_WEIGHTS_FILE).is_file()
    saved = read_trainable_file(tmp_path / "adapter")
    assert set(saved) == set(params) and all(torch.equal(saved[n], p.detach()) for n, p in params.items())


@pytest.mark.parametrize("adapter", ["full", "lora"])
def test_trainable_state_set_trainable_round_trip(tiny_base, tiny_lora, adapter):
    model = make_trainable(copy.deepcopy(tiny_base[0]), FULL) if adapter == "full" else tiny_lora[0]
    state = trainable_state(model)
    logits = _logits(model)
    _perturb(model)
    assert all(not torch.equal(state[n], p) for n, p in trainable_parameters(model).items())  # a copy, not a view
    assert not torch.allclose(_logits(model), logits)
    set_trainable(model, state)
    assert all(torch.equal(state[n], p) for n, p in trainable_parameters(model).items())
    assert torch.equal(_logits(model), logits)
    assert all(p.requires_grad for p in trainable_parameters(model).values())  # still trains


def test_set_trainable_names_what_is_missing(full_model):
    state = trainable_state(full_model)
    missing = sorted(state)[:2]
    with pytest.raises(ValueError, match=r"my-adapter: no weights for \[" + repr(missing[0])):
        set_trainable(full_model, {n: t for n, t in state.items() if n not in missing}, "my-adapter")


def test_full_weights_save_and_load_into_a_fresh_model(tiny_base, full_model, tmp_path):
    _perturb(full_model)
    save_trainable(full_model, tmp_path / "adapter")
    assert [p.name for p in (tmp_path / "adapter").iterdir()] == [FULL_WEIGHTS_FILE]
    fresh = make_trainable(copy.deepcopy(tiny_base[0]), FULL)
    assert not torch.equal(_logits(fresh), _logits(full_model))
    load_trainable_state(fresh, tmp_path / "adapter")
    assert torch.equal(_logits(fresh), _logits(full_model))
    loaded = make_trainable(copy.deepcopy(tiny_base[0]), FULL, adapter_path=tmp_path / "adapter")
    assert torch.equal(_logits(loaded), _logits(full_model))
    with pytest.raises(FileNotFoundError, match=f"neither {PEFT_WEIGHTS_FILE} nor {FULL_WEIGHTS_FILE}"):
        read_trainable_file(tmp_path)


@pytest.mark.parametrize("adapter", ["full", "lora"])
def test_base_weights_is_the_model_before_training_and_gives_the_trained_one_back(tiny_base, tiny_lora, adapter):
    base, _ = tiny_base
    model = make_trainable(copy.deepcopy(base), FULL) if adapter == "full" else tiny_lora[0]
    _perturb(model)
    trained = trainable_state(model)
    trained_logits, base_logits = _logits(model), _logits(base)
    assert not torch.allclose(trained_logits, base_logits)
    with base_weights(model) as inside:
        assert inside is model
        torch.testing.assert_close(_logits(model), base_logits, rtol=0, atol=1e-6)
    assert torch.equal(_logits(model), trained_logits)
    assert all(torch.equal(trained[n], p) for n, p in trainable_parameters(model).items())  # bit for bit
    with pytest.raises(RuntimeError, match="a bug"), base_weights(model):
        raise RuntimeError("a bug")
    assert all(torch.equal(trained[n], p) for n, p in trainable_parameters(model).items())


def test_swapped_trainable_puts_the_models_own_weights_back_after_an_error(full_model):
    own = trainable_state(full_model)
    other = {n: torch.zeros_like(t) for n, t in own.items()}
    with pytest.raises(RuntimeError, match="a bug"), swapped_trainable(full_model, other):
        assert all(not p.any() for p in trainable_parameters(full_model).values())
        raise RuntimeError("a bug")
    assert all(torch.equal(own[n], p) for n, p in trainable_parameters(full_model).items())
