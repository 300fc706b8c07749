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

from grail.batching import Encoded, answer_logits, batches, collate, encode_all
from grail.data.examples import HELDOUT_SCOPE, PARAPHRASE_SET, Benchmark, Example
from grail.data.general import GENERAL_PROBE, GENERAL_TEXT, UTILITY_CHECK_TEXT
from grail.metrics import (
    contains_span,
    harmonic_success,
    mean_log_prob,
    perplexity,
    rouge_l,
    token_accuracy,
)
from grail.models import eval_mode


@torch.no_grad()
def teacher_forced(model: nn.Module, items: Sequence[Encoded], pad_id: int, batch_size: int,
                   device: torch.device | str) -> tuple[list[float], list[float], list[list[int]]]:
    """Per example: answer-token accuracy in [0, 1], mean log-probability, and the argmax decode's ids."""
    accuracy, log_prob, decoded = [0.0] * len(items), [0.0] * len(items), [[] for _ in items]
    with eval_mode(model):  # called mid-training too (stage 3's utility checks): scores never see dropout
        for index in batches(items, batch_size):
            batch = collate([items[i] for i in index], pad_id).to(device)
            logits = answer_logits(model, batch)
            acc = token_accuracy(logits, batch.targets, batch.answer_mask)
            lp = mean_log_prob(logits, batch.targets, batch.answer_mask)
            argmax = logits.argmax(-1)
            for row, i in enumerate(index):
                accuracy[i], log_prob[i] = acc[row].item(), lp[row].item()
                decoded[i] = argmax[row][batch.answer_mask[row]].tolist()
    return accuracy, log_prob, decoded


@torch.no_grad()
def generate(model: nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Sequence[int]],
             max_new_tokens: Sequence[int] | int, batch_size: int, device: torch.device | str,
             keep_ids: bool = False) -> list:
    """Greedy continuations of token-id prompts (left-padded batches): texts, or (``keep_ids``) the new token
    ids up to and including the first EOS."""
    budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    items = [Encoded(tuple(p), ()) for p in prompts]
    texts: list = [""] * len(prompts)
    with eval_mode(model):
        for index in batches(items, batch_size):
            width = max(len(prompts[i]) for i in index)
            ids = torch.full((len(index), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, i in enumerate(index):
                ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
                mask[row, width - len(prompts[i]):] = 1
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                                 max_new_tokens=max(budgets[i] for i in index), pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
            for row, i in enumerate(index):
                new = out[row, width:width + budgets[i]].tolist()
                if tokenizer.eos_token_id in new:
                    new = new[:new.index(tokenizer.eos_token_id) + 1]
                texts[i] = new if keep_ids else tokenizer.decode(new, skip_special_tokens=True)
    return texts


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


def chat_prompts(tokenizer: PreTrainedTokenizerBase, questions: Sequence[str]) -> list[list[int]]:
    """Questions as the model would be asked them: its chat template if it has one."""
    if getattr(tokenizer, "chat_template", None):
        return [tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                              tokenize=True, return_dict=False) for q in questions]
    return [tokenizer(q + "\n\n").input_ids for q in questions]


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
        from grail.mmlu import mmlu_scores

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
