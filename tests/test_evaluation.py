"""Scores are taken without dropout whatever mode the model is in (stage 3 checks its utility budget mid-epoch)."""

from tiny_configs import lora_on

from grail.evaluation import generate, teacher_forced, utility_check_ppl


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
