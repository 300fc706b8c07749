"""The per-token split of the answers' log-probability (``benchmarks/answer_tokens.py``) on a tiny run: every model
the folder holds, its mean over all tokens the LOSS score evaluation computes, the end of the answer learnt in
stage 0."""

import importlib.util
from pathlib import Path
from statistics import mean

import pytest
from tiny_configs import TINY_RUN

from grail.batching import encode_all
from grail.pipeline import Pipeline
from grail.scoring import teacher_forced

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "answer_tokens.py"


@pytest.fixture(scope="module")
def answer_tokens():
    spec = importlib.util.spec_from_file_location("answer_tokens", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_answer_tokens_splits_the_loss_score_of_every_held_model(cli_run, answer_tokens):
    folder = cli_run(TINY_RUN, "tokens")
    measured = answer_tokens.measure(folder)
    assert list(measured) == ["base", "vanilla", "grail"]
    pipeline = Pipeline(folder)
    m, tokenizer = pipeline.config.model, pipeline.tokenizer
    model = pipeline.use_weights("adapter_vanilla")
    for domain in pipeline.benchmark.domains:
        items = encode_all(tokenizer, domain.forget, m.prompt_format, m.max_length)
        loss_scores = teacher_forced(model, items, tokenizer.pad_token_id, 8, "cpu")[1]
        assert measured["vanilla"][domain.name]["forget"]["all"] == pytest.approx(mean(loss_scores), abs=1e-5)
        for name in ("forget", "holdout"):
            # every answer ends with EOS, and stage 0 taught the model where answers end
            assert measured["vanilla"][domain.name][name]["end_of_answer"] > \
                measured["base"][domain.name][name]["end_of_answer"]
    assert "| vanilla | privacy | forget |" in answer_tokens.render(measured)
