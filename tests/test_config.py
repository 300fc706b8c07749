import re
from pathlib import Path

import pytest

from grail.config import PRESETS, ConfigError, RunConfig, build_config, load_config


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_preset_changes_the_defaults_exactly_where_it_says_and_overrides_merge_into_it(preset):
    assert load_config() == RunConfig()
    config, default = build_config(preset=preset).to_dict(), RunConfig().to_dict()
    changed = {(section, key): value for section, values in config.items() if isinstance(values, dict)
               for key, value in values.items() if value != default[section][key]}
    assert changed == {(section, key): value for section, values in PRESETS[preset].items()
                       for key, value in values.items() if value != default[section][key]}
    assert load_config(preset=preset).to_dict() == config
    # an override of one field of a section the preset sets keeps the preset's other fields
    merged = build_config({"unlearn": {"epochs": 3}}, preset=preset)
    assert merged.to_dict() == {**config, "unlearn": {**config["unlearn"], "epochs": 3}}


def test_an_unknown_preset_is_named():
    with pytest.raises(ConfigError, match=re.escape(f"unknown preset 'tiniest'; known: {sorted(PRESETS)}")):
        build_config(preset="tiniest")


def test_yaml_overrides_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("unlearn:\n  lr: 2e-4\n  policy: per-objective\nlocalize:\n  k_rr: 30\n")
    config = load_config(path)
    assert config.unlearn.lr == 2e-4 and config.unlearn.policy == "per-objective" and config.localize.k_rr == 30.0
    (tmp_path / "again.yaml").write_text(config.to_yaml())
    assert load_config(tmp_path / "again.yaml") == config


@pytest.mark.parametrize("text,message", [
    ("unlearn:\n  lrr: 1\n", r"unlearn.lrr: unknown field; did you mean 'lr'\?"),
    ("unlearn:\n  policy: both\n", r"unlearn.policy: must be one of \['paper', 'per-objective'\]"),
    ("localize:\n  k_ur: ten\n", r"localize.k_ur: expected float"),
    ("localize:\n  k_ur: 0\n", r"localize.k_ur must be a percentage"),
    ("unlearn:\n  ascent_margin: -1\n", r"unlearn.ascent_margin must be >= 0"),
    ("gradients:\n  trials: true\n", r"gradients.trials: expected int"),
    ("data:\n  source: jsonl\n", r"data.path must be set for data.source 'jsonl'"),
    ("model: [1, 2]\n", r"model: expected a mapping"),
    ("unlearn: {lr: 1\n", r"invalid YAML"),
    ("data:\n  domains: [{name: p}]\n", r"data.domains\[0\]: missing field 'source'"),
    ("data:\n  domains: [a, {name: b, source: tofu, forget: forget7}]\n",
     r"data.domains\[1\].forget: must be one of \['forget01', 'forget05', 'forget10'\]"),
    ("data:\n  domains: [{name: b, source: muse, corpus: books, raw: 3}]\n", r"data.domains\[0\].raw: unknown field"),
    ("data:\n  domains: [{name: b, source: jsonl}]\n", r"data.domains\[0\].path must be set for source 'jsonl'"),
    ("data:\n  domains: [{name: a/b, source: tofu}]\n", r"data.domains\[0\].name must be letters"),
    ("data:\n  domains: [privacy, {name: privacy, source: tofu}]\n", r"data.domains must be a list of distinct"),
])
def test_bad_config_names_file_and_field(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    """Every value the file sets is the loaded config's (and the file sets something)."""
    import yaml

    config, written = load_config(path), yaml.safe_load(path.read_text())
    assert written
    loaded = config.to_dict()
    for section, values in written.items():
        if not isinstance(values, dict):  # a top-level field (seed, distributed)
            assert loaded[section] == values, section
            continue
        for key, value in values.items():
            if key == "domains" and isinstance(value, list):  # entries: every key they set
                for entry, stored in zip(value, loaded[section][key], strict=True):
                    assert entry == stored if isinstance(entry, str) else entry.items() <= stored.items(), entry
            else:
                assert loaded[section][key] == value, f"{section}.{key}"


@pytest.mark.parametrize("section,overrides,message", [
    ("unlearn", {"forget_objective": "ascend"}, r"unlearn.forget_objective: must be one of"),
    ("unlearn", {"epochs": 0}, r"unlearn.epochs must be >= 1"),
    ("finetune", {"epochs": 0}, r"finetune.epochs must be >= 1"),
    ("finetune", {"epochs": -3}, r"finetune.epochs must be >= 1"),
    ("gradients", {"batch_size": 0}, r"gradients.batch_size must be >= 1"),
    ("evaluate", {"batch_size": 0}, r"evaluate.batch_size must be >= 1"),
    ("model", {"max_length": 0}, r"model.max_length must be >= 2"),
    ("data", {"people": 0}, r"data.people must be >= 1"),
    ("localize", {"k_ur": 200.0}, r"localize.k_ur must be a percentage"),
])
def test_a_section_built_in_code_is_checked_like_a_file(section, overrides, message):
    """dataclasses.replace (how a method's overrides are applied) runs the same checks as a YAML file."""
    import dataclasses

    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(getattr(RunConfig(), section), **overrides)
    with pytest.raises(ConfigError, match=message):
        build_config({section: overrides})


def test_every_registered_method_overrides_pass_validation():
    """Resolved against the default run (as ``Experiments.unlearn_method`` resolves them), no method sets a field its
    own setting ignores; an override that does is caught by the same check. (What each method's resolved config
    holds: tests/test_methods.py.)"""
    import dataclasses
    import warnings

    from grail.config import ConfigWarning
    from grail.methods import METHODS, Method, sweep_methods

    config = RunConfig()

    def resolve(method):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return (dataclasses.replace(config.unlearn, **method.unlearn),
                    dataclasses.replace(config.localize, **method.localize))

    for method in [*METHODS.values(), *sweep_methods([5.0, 50.0], [5.0, 50.0])]:
        resolve(method)
    with pytest.warns(ConfigWarning, match="unlearn.npo_beta is ignored"):  # registering it already says so
        odd = Method("odd", "NPO's temperature without NPO", {"npo_beta": 0.5})
    with pytest.raises(ConfigWarning, match="unlearn.npo_beta is ignored"):
        resolve(odd)


@pytest.mark.parametrize("config,ignored", [
    ({"unlearn": {"npo_beta": 0.5}}, {"unlearn.npo_beta"}),
    ({"unlearn": {"npo_beta": 0.5, "forget_objective": "npo"}}, set()),
    ({"unlearn": {"forget_objective": "ascent", "ascent_margin": 1.0}}, set()),  # its stop asks "predicted?"
    ({"unlearn": {"ascent_margin": 1.0, "ascent_stop": "uniform"}}, {"unlearn.ascent_margin", "unlearn.ascent_stop"}),
    ({"unlearn": {"forget_objective": "ascent", "ascent_margin": 1.0, "ascent_stop": "uniform"}},
     {"unlearn.ascent_margin"}),
    ({"unlearn": {"target_us": 80.0}}, {"unlearn.target_us"}),
    ({"unlearn": {"target": "us", "target_us": 80.0}}, set()),
    ({"unlearn": {"target": "none", "target_check_steps": 5}}, {"unlearn.target_check_steps"}),
    ({"unlearn": {"utility_budget": None, "budget_backoff": 1, "budget_repair_steps": 0}},
     {"unlearn.budget_backoff", "unlearn.budget_repair_steps"}),
    ({"unlearn": {"utility_budget": 1.5, "budget_backoff": 1}}, set()),
    ({"model": {"adapter": "full", "lora_r": 16}}, {"model.lora_r"}),
    ({"finetune": {"adapter_path": "my-adapter", "epochs": 3}}, {"finetune.epochs"}),
    ({"finetune": {"replay_weight": 0.0, "replay_batch_size": 2}}, {"finetune.replay_batch_size"}),
    ({"data": {"source": "jsonl", "path": "x.jsonl", "people": 3}}, {"data.people"}),
    ({"data": {"domains": [{"name": "p", "source": "builtin", "domain": "privacy"}], "people": 3}}, set()),
    ({"data": {"split": "val"}}, {"data.split"}),
])
def test_a_field_that_changes_nothing_in_its_setting_is_warned_about(config, ignored):
    """Set to another value than its default where it has no effect, a field draws a ConfigWarning naming it."""
    import warnings

    from grail.config import ConfigWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_config(config)
    assert {str(w.message).split(" is ignored")[0] for w in caught if w.category is ConfigWarning} == ignored


@pytest.mark.parametrize("overrides,message", [({"unlearn": {"forget_wieght": 1.0}}, "unlearn has no field"),
                                               ({"unlearn": {"lr": -1.0}}, "unlearn.lr must be > 0"),
                                               ({"localize": {"k_ur": "ten"}}, "localize.k_ur")])
def test_a_method_with_a_bad_override_fails_when_it_is_registered(overrides, message):
    from grail.methods import Method

    with pytest.raises(ConfigError, match=f"method 'broken': {message}"):
        Method("broken", "a method with a bad override", **overrides)


def test_a_removed_field_loads_at_its_old_default_and_is_refused_otherwise():
    """An older run folder's config.yaml names every field of its day: at the value that meant "off" it still loads
    (with a warning); at any other value the config would ask for what no longer exists."""
    from grail.config import ConfigWarning

    with pytest.warns(ConfigWarning, match="localize.protect_general: removed"):
        config = build_config({"localize": {"protect_general": False, "k_ur": 5.0}})
    assert config.localize.k_ur == 5.0 and "protect_general" not in config.to_dict()["localize"]
    with pytest.raises(ConfigError, match="localize.protect_general: removed .*delete it from the config"):
        build_config({"localize": {"protect_general": True}})


def _float_fields() -> list[str]:
    """``section.field`` for every float field (float or float | None) of every section of a run's config."""
    import dataclasses
    import typing

    names = []
    for section, cls in typing.get_type_hints(RunConfig).items():
        if dataclasses.is_dataclass(cls):
            hints = typing.get_type_hints(cls)
            names += [f"{section}.{f.name}" for f in dataclasses.fields(cls)
                      if hints[f.name] is float or float in typing.get_args(hints[f.name])]
    return names


FLOAT_FIELDS = _float_fields()


def test_the_float_fields_are_found():
    assert {"finetune.lr", "unlearn.lr", "unlearn.utility_budget", "attack.relearn_lr", "model.lora_dropout",
            "localize.k_ur"} <= set(FLOAT_FIELDS)


@pytest.mark.parametrize("where", FLOAT_FIELDS)
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), "inf"])
def test_every_float_field_must_be_finite(where, value):
    """No float field gives infinity or NaN a meaning: stage 0 at lr .inf trains a broken model and passes."""
    section, name = where.split(".")
    with pytest.raises(ConfigError, match=rf"config: {where}: must be a finite number, got {value}"):
        build_config({section: {name: value}})


@pytest.mark.parametrize("text", ["finetune:\n  lr: .inf\n", "unlearn:\n  utility_budget: .NaN\n",
                                  "attack:\n  max_leak_excess: -.inf\n"])
def test_non_finite_yaml_numbers_are_named_with_the_file(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"{path}: \w+\.\w+: must be a finite number"):
        load_config(path)


def test_a_string_with_a_lone_surrogate_is_refused():
    """YAML's "\\ud800" escape gives a string no file can hold (config.yaml, a path)."""
    with pytest.raises(ConfigError, match=r"data.path: not valid Unicode text \(character 2 is a lone surrogate"):
        build_config({"data": {"source": "jsonl", "path": "x\ud800.jsonl"}})
