"""Scoring a model on every domain's sets and on the general ('otherwise') scope.

Per domain: forget (US), retain (RS), and where the data has them retain_heldout (RS_heldout: retain facts that
unlearning never saw) and forget_paraphrase (US_paraphrase: forget facts asked in a wording unlearning never
trained on). General scope: the built-in probe, perplexity of held-out general text, MMLU in cloze form, and the
data's own general-knowledge questions where it has them (``knowledge``: answer-token accuracy).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from statistics import mean

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from grail.batching import Encoded, encode_all
from grail.data.examples import HELDOUT_SCOPE, PARAPHRASE_SET, Benchmark, Example
from grail.data.general import GENERAL_PROBE, GENERAL_TEXT, UTILITY_CHECK_TEXT
from grail.metrics import contains_span, harmonic_success, perplexity, rouge_l
from grail.mmlu import mmlu_scores
from grail.scoring import chat_prompts, generate, teacher_forced

SCORES_VERSION = 1
"""Part of the key under which the base and the vanilla model's scores are shared between runs (GRAIL_CACHE):
raised when the same model, data and evaluate section give other scores (a changed or added score)."""


def score_set(model: nn.Module, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example],
              items: Sequence[Encoded], batch_size: int, device: torch.device | str,
              max_new_tokens: int | None = None) -> dict:
    """One dataset's scores; generation-based ones only when ``max_new_tokens`` is given."""
    accuracy, log_prob, decoded = teacher_forced(model, items, tokenizer.pad_token_id, batch_size, device)
    scores = {
        "n": len(items),
        "accuracy": 100.0 * mean(accuracy),
        "ppl": perplexity(log_prob),
        "rouge_l": mean(rouge_l(tokenizer.decode(d, skip_special_tokens=True), ex.answer)
                        for d, ex in zip(decoded, examples)),
    }
    if max_new_tokens is not None:
        budgets = [min(max_new_tokens, len(x.answer_ids) + 4) for x in items]
        texts = generate(model, tokenizer, [x.prompt_ids for x in items], budgets, batch_size, device)
        scores["rouge_l_generation"] = mean(rouge_l(t, ex.answer) for t, ex in zip(texts, examples))
        scores["span_rate"] = 100.0 * mean(contains_span(t, ex.leak_span) for t, ex in zip(texts, examples))
        scores["samples"] = [{"prompt": ex.prompt, "answer": ex.answer, "generation": t}
                             for ex, t in list(zip(examples, texts))[:3]]
    return scores


def summarize(domains: dict[str, dict]) -> dict:
    """Add US / RS / HS (and RS_heldout / US_paraphrase where measured) per domain, and their averages over
    domains (Table I's 'Avg.')."""
    for scores in domains.values():
        scores["US"] = 100.0 - scores["forget"]["accuracy"]
        scores["RS"] = scores["retain"]["accuracy"]
        scores["HS"] = harmonic_success(scores["US"], scores["RS"])
        if HELDOUT_SCOPE in scores:
            scores["RS_heldout"] = scores[HELDOUT_SCOPE]["accuracy"]
        if PARAPHRASE_SET in scores:
            scores["US_paraphrase"] = 100.0 - scores[PARAPHRASE_SET]["accuracy"]
        if "span_rate" in scores["forget"]:
            scores["leak_rate"] = scores["forget"]["span_rate"]
        if "span_rate" in scores["retain"]:
            scores["retain_produced_rate"] = scores["retain"]["span_rate"]
    keys = ["US", "RS", "HS"] + [k for k in ("RS_heldout", "US_paraphrase")
                                 if all(k in s for s in domains.values())]
    average = {key: mean(s[key] for s in domains.values()) for key in keys}
    average["success"] = mean([average["US"], average["RS"]])
    return {"domains": domains, "average": average}


def text_items(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[Encoded]:
    """Plain texts as examples whose 'answer' is every token after the first (language-model loss)."""
    items = []
    for text in texts:
        ids = tokenizer(text).input_ids
        items.append(Encoded(tuple(ids[:1]), tuple(ids[1:])))
    return items


def _accepted(text: str, answers: Sequence[str]) -> bool:
    return any(re.search(rf"(?<!\w){re.escape(a.lower())}(?!\w)", text.lower()) for a in answers)


def text_perplexity(model: nn.Module, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], batch_size: int,
                    device: torch.device | str) -> float:
    _, log_prob, _ = teacher_forced(model, text_items(tokenizer, texts), tokenizer.pad_token_id, batch_size, device)
    return perplexity(log_prob)


def utility_check_ppl(model: nn.Module, tokenizer: PreTrainedTokenizerBase, batch_size: int,
                      device: torch.device | str) -> float:
    """Perplexity of the utility-check text: what utility budgets stop on during unlearning. It is neither
    trained on nor the reported general-text perplexity, so stopping on it selects nothing on a test set."""
    return text_perplexity(model, tokenizer, UTILITY_CHECK_TEXT, batch_size, device)


def probe_answers(model: nn.Module, tokenizer: PreTrainedTokenizerBase, batch_size: int,
                  device: torch.device | str) -> list[tuple[str, str, bool]]:
    """Each probe question, the model's greedy answer (24 new tokens, chat template) and whether it counts."""
    answers = generate(model, tokenizer, chat_prompts(tokenizer, [q for q, _ in GENERAL_PROBE]), 24, batch_size,
                       device)
    return [(q, a, _accepted(a, accepted)) for a, (q, accepted) in zip(answers, GENERAL_PROBE)]


def general_scores(model: nn.Module, tokenizer: PreTrainedTokenizerBase, batch_size: int,
                   device: torch.device | str, mmlu_questions: Sequence | None = None) -> dict:
    """The offline 'otherwise' scope: probe accuracy (%), perplexity of held-out general text and, given its
    questions, MMLU in cloze form (acc_norm %, mean log-probability of the right answer's text)."""
    probe = probe_answers(model, tokenizer, batch_size, device)
    scores = {"probe_accuracy": 100.0 * mean(ok for _, _, ok in probe), "probe_n": len(probe),
              "general_text_ppl": text_perplexity(model, tokenizer, GENERAL_TEXT, batch_size, device),
              "probe_wrong": [q for q, _, ok in probe if not ok]}
    if mmlu_questions:
        # A packed MMLU row is a question with its four choices, each row with its own [T, T] mask: a quarter of
        # the examples a pass (8 of 32) scored the 228 questions in 25.5 s against 36.3 s, the same scores.
        scores.update(mmlu_scores(model, tokenizer, mmlu_questions, max(1, batch_size // 4), device))
    return scores


def evaluate(model: nn.Module, tokenizer: PreTrainedTokenizerBase, benchmark: Benchmark, prompt_format: str,
             max_length: int, batch_size: int, device: torch.device | str, max_new_tokens: int | None = None,
             general: bool = False, progress: bool = False, mmlu_questions: Sequence | None = None,
             measured: bool = True) -> dict:
    """Scores of every set (``measured=False``: forget and retain only, the fast check during unlearning),
    US/RS/HS (RS_heldout, US_paraphrase) per domain and averaged, and optionally the general scope."""
    domains: dict[str, dict] = {}
    sets = list(benchmark.measured_sets() if measured else benchmark.datasets())
    for domain, name, examples in tqdm(sets, desc="evaluate", disable=not progress, leave=False):
        items = encode_all(tokenizer, examples, prompt_format, max_length)
        domains.setdefault(domain, {})[name] = score_set(model, tokenizer, examples, items, batch_size, device,
                                                         max_new_tokens)
    result = summarize(domains)
    if general:
        result["general"] = general_scores(model, tokenizer, batch_size, device, mmlu_questions)
        knowledge = benchmark.knowledge()
        if knowledge:  # the data's own general-knowledge questions (TOFU's real authors, world facts)
            items = encode_all(tokenizer, knowledge, prompt_format, max_length)
            scores = score_set(model, tokenizer, knowledge, items, batch_size, device, max_new_tokens)
            result["general"].update(knowledge=scores, knowledge_accuracy=scores["accuracy"],
                                     knowledge_n=scores["n"])
    return result
