from pathlib import Path

import pytest

from grail.config import ConfigError, RunConfig, build_config, load_config


def test_defaults_and_presets():
    assert load_config() == RunConfig()
    smoke = build_config(preset="smoke")
    assert smoke.model.name == "tiny" and smoke.model.adapter == "full" and smoke.localize.k_ur == 10.0


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
    ("gradients:\n  trials: true\n", r"gradients.trials: expected int"),
    ("data:\n  source: jsonl\n", r"data.path must be set for data.source 'jsonl'"),
    ("model: [1, 2]\n", r"model: expected a mapping"),
    ("unlearn: {lr: 1\n", r"invalid YAML"),
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
    assert load_config(path) != RunConfig()  # loads without error, and sets something


def test_readme_lists_every_field_with_its_default():
    """README's 'Configuration' block is the defaults a user reads: it must be RunConfig's, field for field."""
    import re

    import yaml

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(r"## Configuration\n.*?```yaml\n(.*?)```", readme, re.S).group(1)
    assert yaml.safe_load(block) == RunConfig().to_dict()
