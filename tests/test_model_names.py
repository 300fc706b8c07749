import json

from grail.model_names import ModelName


def test_a_model_name_is_its_string_in_files_keys_and_messages():
    assert ModelName.VANILLA == "vanilla" and {"vanilla": 1}[ModelName.VANILLA] == 1
    assert json.dumps({ModelName.ORACLE: [ModelName.GRAIL]}) == '{"oracle": ["grail"]}'
    assert f"adapter_{ModelName.ORACLE}" == "adapter_oracle"
    assert str([ModelName.GRAIL, "npo"]) == "['grail', 'npo']"
    assert [m.value for m in ModelName] == ["base", "vanilla", "oracle", "grail"]
