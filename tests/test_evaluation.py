"""Scores are taken without dropout whatever mode the model is in (stage 3 checks its utility budget mid-epoch);
the probe counts what the model said."""

import pytest
from tiny_configs import lora_on

from grail.evaluation import utility_check_ppl
from grail.scoring import generate, teacher_forced


def test_scores_mid_training_see_no_dropout_and_leave_the_model_training(tiny_base, tiny_encoded):
    base, tokenizer = tiny_base
    model = lora_on(base, dropout=0.5, b_scale=0.5)  # LoRA large enough that its dropout changes the output
    items = tiny_encoded["privacy/forget"]
    model.eval()
    reference = (teacher_forced(model, items, tokenizer.pad_token_id, 4, "cpu"),
                 utility_check_ppl(model, tokenizer, 4, "cpu"),
                 generate(model, tokenizer, [x.prompt_ids for x in items], 5, 4, "cpu"))
    model.train()
    for _ in range(2):  # with dropout these would differ from each other and from the reference
        assert teacher_forced(model, items, tokenizer.pad_token_id, 4, "cpu") == reference[0]
        assert utility_check_ppl(model, tokenizer, 4, "cpu") == reference[1]
        assert generate(model, tokenizer, [x.prompt_ids for x in items], 5, 4, "cpu") == reference[2]
    assert model.training


def test_a_probe_answer_counts_when_it_names_an_accepted_answer_as_a_word(tiny_base, monkeypatch):
    """probe_answers and general_scores score what the model said: an accepted answer as a whole word counts
    ("Paris." yes, "Parisian" no), whatever its case."""
    import grail.evaluation as evaluation
    from grail.data.general import GENERAL_PROBE

    model, tokenizer = tiny_base
    said = [f"It is {accepted[0].upper()}." for _, accepted in GENERAL_PROBE]
    said[0] = f"{GENERAL_PROBE[0][1][0]}ian"  # the answer inside another word
    said[1] = "I do not know."
    monkeypatch.setattr(evaluation, "generate", lambda *args, **kwargs: said)
    probe = evaluation.probe_answers(model, tokenizer, 4, "cpu")
    assert [(q, a) for q, a, _ in probe] == [(q, a) for (q, _), a in zip(GENERAL_PROBE, said)]
    assert [ok for _, _, ok in probe] == [False, False] + [True] * (len(GENERAL_PROBE) - 2)
    scores = evaluation.general_scores(model, tokenizer, 4, "cpu")
    assert scores["probe_wrong"] == [GENERAL_PROBE[0][0], GENERAL_PROBE[1][0]]
    assert scores["probe_accuracy"] == pytest.approx(100.0 * (len(GENERAL_PROBE) - 2) / len(GENERAL_PROBE))
