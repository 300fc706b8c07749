"""Tokenizing examples and the answer-only losses: what ``encode`` keeps, how ``collate`` pads (on the left) and masks,
how ``batches`` groups, and that a padded batch scores each example as the model scores it alone."""

import copy
import math
import random

import pytest
import torch
import torch.nn.functional as F

from grail.batching import (
    Batch,
    Encoded,
    answer_logits,
    batches,
    collate,
    encode,
    encode_all,
    example_losses,
    forward,
    per_example_loss,
)
from grail.data.examples import Example

EXAMPLE = Example("Personal record of Mara Lindqvist. Phone number:", "555-0199, reachable in the evenings.")


def test_encode_is_the_prompt_with_a_blank_line_then_the_answer_ending_with_eos(tiny_base):
    _, tokenizer = tiny_base
    item = encode(tokenizer, EXAMPLE)
    assert tokenizer.decode(item.prompt_ids) == EXAMPLE.prompt + "\n\n"
    assert item.answer_ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(item.answer_ids[:-1]) == EXAMPLE.answer
    assert tokenizer.eos_token_id not in item.answer_ids[:-1]
    assert len(item) == len(item.prompt_ids) + len(item.answer_ids)
    assert encode_all(tokenizer, [EXAMPLE, EXAMPLE]) == [item, item]


def test_a_chat_prompt_is_the_templates_user_turn_and_generation_prompt(tiny_base):
    _, tokenizer = tiny_base
    chat = copy.deepcopy(tokenizer)  # the shared fixture's tokenizer has no template; keep it so
    chat.chat_template = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
                          "{% if add_generation_prompt %}[assistant] {% endif %}")
    item = encode(chat, EXAMPLE, prompt_format="chat")
    assert chat.decode(item.prompt_ids) == f"[user] {EXAMPLE.prompt}\n[assistant] "
    assert item.answer_ids == encode(tokenizer, EXAMPLE).answer_ids  # the answer is encoded the same either way


@pytest.mark.parametrize("max_length", [8, 30, 40])
def test_a_long_example_loses_the_start_of_its_prompt_and_keeps_the_answer(tiny_base, max_length):
    _, tokenizer = tiny_base
    whole = encode(tokenizer, EXAMPLE, max_length=10_000)
    assert len(whole.answer_ids) < 30 < 40 < len(whole)  # the answer fits in 30, the whole example not in 40
    cut = encode(tokenizer, EXAMPLE, max_length=max_length)
    assert len(cut) == max_length
    if len(whole.answer_ids) < max_length:
        assert cut.answer_ids == whole.answer_ids  # the answer and its EOS are whole
    else:  # the answer itself too long: its first tokens, and the prompt's last token before it
        assert cut.answer_ids == whole.answer_ids[:max_length - 1]
    assert len(cut.prompt_ids) >= 1
    # what stays of the prompt is its end: the words right before the answer
    assert cut.prompt_ids == whole.prompt_ids[len(whole.prompt_ids) - len(cut.prompt_ids):]


def test_collate_pads_on_the_left_and_marks_the_answer_tokens():
    items = [Encoded((5, 6, 7, 10), (8, 9)), Encoded((3,), (4, 5, 6, 1)), Encoded((2,), (1,))]
    batch = collate(items, pad_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7, 10, 8, 9],
                                        [0, 3, 4, 5, 6, 1],
                                        [0, 0, 0, 0, 2, 1]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1, 1],
                                             [0, 1, 1, 1, 1, 1],
                                             [0, 0, 0, 0, 1, 1]]
    # K = 4, the longest answer: the last 4 tokens of each row are the targets, the answer's of them marked
    assert batch.targets.tolist() == [[7, 10, 8, 9],
                                      [4, 5, 6, 1],
                                      [0, 0, 2, 1]]
    assert batch.answer_mask.tolist() == [[False, False, True, True],
                                          [True, True, True, True],
                                          [False, False, False, True]]
    assert batch.input_ids.dtype == torch.long and batch.answer_mask.dtype == torch.bool


def test_collate_pads_with_the_given_id_and_batch_to_moves_every_tensor():
    batch = collate([Encoded((5,), (6,)), Encoded((5, 6, 7), (8,))], pad_id=99)
    assert batch.input_ids[0].tolist() == [99, 99, 5, 6]
    moved = batch.to("meta")
    assert [t.device.type for t in (moved.input_ids, moved.attention_mask, moved.targets, moved.answer_mask)] == [
        "meta"] * 4


def _lengths(n=11):
    return [Encoded(tuple(range(1, 1 + length)), (1,)) for length in random.Random(5).choices(range(1, 6), k=n)]


def test_batches_without_a_generator_go_by_rising_length():
    items = _lengths()
    groups = list(batches(items, 3))
    assert [len(g) for g in groups] == [3, 3, 3, 2]
    order = [i for g in groups for i in g]
    assert sorted(order) == list(range(len(items)))
    assert [len(items[i]) for i in order] == sorted(len(x) for x in items)


def test_shuffled_batches_group_similar_lengths_in_a_seeded_order():
    items = _lengths()
    groups = list(batches(items, 3, random.Random(0)))
    assert sorted(i for g in groups for i in g) == list(range(len(items)))  # each example once
    by_length = sorted(len(x) for x in items)
    chunks = [by_length[i:i + 3] for i in range(0, len(items), 3)]
    # each batch is a run of neighbours in length order (less padding), the batches in shuffled order
    assert sorted(sorted(len(items[i]) for i in g) for g in groups) == sorted(chunks)
    assert groups == list(batches(items, 3, random.Random(0)))
    assert any(list(batches(items, 3, random.Random(seed))) != groups for seed in range(1, 6))


def _by_hand(model, item: Encoded) -> float:
    """Mean cross-entropy of the answer tokens, the model run on the example alone (no padding, no mask)."""
    ids = torch.tensor([item.prompt_ids + item.answer_ids])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(ids).logits[0].float(), -1)
    start = len(item.prompt_ids)
    # the logits at position p predict token p + 1
    return -sum(log_probs[start + j - 1, token].item() for j, token in enumerate(item.answer_ids)) / len(
        item.answer_ids)


def test_example_losses_are_each_examples_answer_cross_entropy_as_if_alone(tiny_base, tiny_encoded):
    model, tokenizer = tiny_base
    items = tiny_encoded["privacy/forget"][:2] + tiny_encoded["copyright/forget"][:2]
    assert len({len(x) for x in items}) > 1 and len({len(x.answer_ids) for x in items}) > 1  # padding in play
    with torch.no_grad():
        losses = example_losses(model, items, tokenizer.pad_token_id, "cpu")
    assert losses.shape == (len(items),)
    assert losses.tolist() == pytest.approx([_by_hand(model, x) for x in items], rel=1e-4, abs=1e-5)


def test_answer_logits_of_a_padded_row_are_those_of_the_row_alone(tiny_base):
    model, _ = tiny_base
    short, long = Encoded((7, 8), (9, 10)), Encoded((11, 12, 13, 14, 15, 16), (17, 18, 19))
    with torch.no_grad():
        together = answer_logits(model, collate([short, long], 0))
        alone = answer_logits(model, collate([short], 0))
    assert together.shape[:2] == (2, 3) and together.dtype == torch.float32
    # the short row's 2 answer positions: the same logits with 4 pad tokens on its left as without
    torch.testing.assert_close(together[0, 1:], alone[0], rtol=1e-4, atol=1e-5)


def test_forward_counts_each_rows_positions_from_its_first_real_token():
    """The tiny Llama's rotary positions are shift-invariant, so the logits above would not show absolute positions
    gone wrong; a model with learned position embeddings would. What the model is given, then:"""
    seen = {}

    def model(**kwargs):
        seen.update(kwargs)
        return "out"

    batch = collate([Encoded((5, 6), (7,)), Encoded((1, 2, 3, 4), (5,))], pad_id=0)
    assert forward(model, batch, output_hidden_states=True) == "out"
    assert seen["position_ids"].tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]
    assert seen["input_ids"] is batch.input_ids and seen["attention_mask"] is batch.attention_mask
    assert seen["use_cache"] is False and seen["output_hidden_states"] is True
    seen.clear()
    embeds = torch.zeros(2, 5, 8)
    forward(model, batch, inputs_embeds=embeds)  # embeddings instead of token ids, the same positions
    assert seen["inputs_embeds"] is embeds and "input_ids" not in seen
    assert seen["position_ids"].tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]


def test_example_losses_keep_the_graph_for_training(tiny_lora, tiny_encoded):
    model, tokenizer = tiny_lora
    losses = example_losses(model, tiny_encoded["privacy/retain"][:3], tokenizer.pad_token_id, "cpu")
    assert losses.requires_grad
    losses.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)


def test_per_example_loss_counts_answer_positions_only():
    targets = torch.tensor([[2, 0, 1], [3, 3, 0]])
    mask = torch.tensor([[False, True, True], [True, True, True]])
    batch = Batch(torch.zeros(2, 4, dtype=torch.long), torch.ones(2, 4, dtype=torch.long), targets, mask)
    logits = torch.zeros(2, 3, 4)
    logits[0, 0, 2] = -50.0  # a huge loss at a masked (prompt) position: must not count
    logits[0, 1, 0] = logits[1, 2, 0] = math.log(3.0)  # the target at 3x the other tokens' weight: p = 1/2
    expected = [(math.log(2) + math.log(4)) / 2, (math.log(4) + math.log(4) + math.log(2)) / 3]
    assert per_example_loss(logits, batch).tolist() == pytest.approx(expected, rel=1e-6)
    ce = F.cross_entropy(logits[0, 0:1], targets[0, 0:1]).item()
    assert ce > 10  # the masked position's loss is large: counting it would show
